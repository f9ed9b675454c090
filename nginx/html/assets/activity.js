// Activity entries as list items: who by full name (the address as the tooltip, and as the name
// when the account has none), what, which sample or file, and, where several studies are listed
// together, which study. Built with textContent only (dom.el): entries carry users' text.

import { el, formatWhen, humanize } from "./dom.js";

function actor(entry) {
  if (!entry.actor) {
    // An invitation declined from its mailed link has no signed-in actor: the invited address is who.
    const declinedByMail = entry.action === "invitation_declined" && entry.details && entry.details.email;
    return el("span", { className: "who", text: declinedByMail || "a deleted account" });
  }
  const name = entry.actor.full_name || entry.actor.email;
  return el("span", { className: "who", text: name, attributes: { title: entry.actor.email } });
}

/** What an edit changed, by name: "status, volume" (the details hold old and new of those only). */
function changedNames(details) {
  if (!details || !details.new) {
    return [];
  }
  const { values, ...rest } = details.new;
  return [...Object.keys(rest), ...Object.keys(values || {})].map((name) => name.replaceAll("_", " "));
}

function subject(entry) {
  const details = entry.details || {};
  if (entry.file) {
    return ` ${entry.file.filename}${entry.file.deleted ? " (since deleted)" : ""}`;
  }
  return details.sample_id ? ` ${details.sample_id}` : "";
}

/** One entry. `withStudy` names its study (lists across studies); `withChanges` says what an edit changed. */
export function activityItem(entry, { withStudy = false, withChanges = false } = {}) {
  const what = humanize(entry.action).toLowerCase();
  const parts = [
    el("time", { text: formatWhen(entry.at), attributes: { datetime: entry.at } }),
    " — ",
    actor(entry),
    `: ${what}${subject(entry)}`,
  ];
  const changed = withChanges ? changedNames(entry.details) : [];
  if (changed.length) {
    parts.push(` (${changed.join(", ")})`);
  }
  if (withStudy && entry.study) {
    parts.push(" in ", el("span", { className: "study", text: entry.study.code, attributes: { title: entry.study.title } }));
  }
  return el("li", { attributes: { "data-action": entry.action } }, parts);
}

export function nothingYet() {
  return el("li", { className: "muted", text: "Nothing yet." });
}
