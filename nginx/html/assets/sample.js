// One sample's detail: its id, status, every field's value (with its unit) and when it changed; for
// editors of a writable study, a form that sends only what changed, with the version read
// (If-Match). When someone else changed the sample meanwhile (412), their version is shown and the
// user chooses: apply their own changes to it, or drop them. Below, the sample's own activity, newest
// first, a few at a time ("More" reads the next page).

import { activityItem, nothingYet } from "./activity.js";
import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { fieldLabel } from "./fields.js";
import { clearErrors, confirmChange, showProblem, whileSending } from "./forms.js";
import { mayEdit } from "./roles.js";
import { go, studyPath } from "./router.js";
import { addStatusOptions, drawValueControls, enteredValues, formatValue, sampleErrorControl } from "./values.js";

let current = null;  // { study, sample, isCurrent, pending, activityPage }

const ACTIVITY_PAGE_SIZE = 5;

function facts(study, sample) {
  const pairs = [
    ["Sample id", sample.sample_id],
    ["Status", humanize(sample.status)],
    ...study.sample_fields.map((field) => [fieldLabel(field), formatValue(sample.values[field.name])]),
    ["Created", formatWhen(sample.created_at)],
    ["Last changed", `${formatWhen(sample.updated_at)} (version ${sample.version})`],
    ["From a file", sample.source_file_id ? "yes" : "no, entered directly"],
  ];
  return pairs.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value || "—" })]);
}

/** Which upload created the sample (imports log one entry per file, not per sample): its name and
 * when, linked to the study's files; a file deleted since is said so. */
async function showSourceFile(study, sample) {
  const value = byId("sample-facts").lastElementChild;
  try {
    const file = await api.getJson(`/sample-files/${sample.source_file_id}`);
    if (current?.sample?.id !== sample.id) {
      return;
    }
    const link = el("a", { text: file.filename, attributes: { href: studyPath(study.id, "files"), "data-route": "" } });
    value.replaceChildren(link, ` (uploaded ${formatWhen(file.created_at)})`);
  } catch (error) {
    if (error.status === 404 && current?.sample?.id === sample.id) {
      value.textContent = "yes (that file has been deleted since)";
    }
  }
}

/** The sample's activity: page 1 replaces the list (after an edit, the edit is on top), later pages add. */
async function loadActivity(page = 1) {
  const { study, sample, isCurrent } = current;
  const list = byId("sample-activity");
  const more = byId("sample-activity-more");
  showMessage("sample-activity-message", "");
  try {
    const answer = await api.getJson(
      `/studies/${study.id}/samples/${sample.id}/activity?page=${page}&page_size=${ACTIVITY_PAGE_SIZE}`,
    );
    if (!isCurrent() || current.sample?.id !== sample.id) {
      return;
    }
    const items = answer.items.map((entry) => activityItem(entry, { withChanges: true }));
    if (page === 1) {
      list.replaceChildren(...(items.length ? items : [nothingYet()]));
    } else {
      list.append(...items);
    }
    current.activityPage = page;
    more.hidden = page * ACTIVITY_PAGE_SIZE >= answer.total;
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("sample-activity-message", error.message);
    }
  }
}

function fillForm(study, sample) {
  const form = byId("sample-form");
  form.hidden = !mayEdit(study);
  byId("sample-delete-row").hidden = form.hidden;
  clearErrors(form, "sample-form-message");
  byId("sample-edit-id").value = sample.sample_id;
  byId("sample-edit-status").value = sample.status;
  drawValueControls(byId("sample-edit-values"), study, sample.values, "sample-value");
}

function drawSample(study, sample) {
  current.sample = sample;
  byId("sample-title").textContent = `Sample ${sample.sample_id}`;
  byId("sample-facts").replaceChildren(...facts(study, sample));
  if (sample.source_file_id) {
    showSourceFile(study, sample);
  }
}

/** What the form changed, as the PATCH's merge body (an emptied value is null: cleared). */
function changes() {
  const sample = current.sample;
  const body = {};
  const sampleId = byId("sample-edit-id").value.trim();
  if (sampleId !== sample.sample_id) {
    body.sample_id = sampleId;
  }
  if (byId("sample-edit-status").value !== sample.status) {
    body.status = byId("sample-edit-status").value;
  }
  const values = enteredValues(byId("sample-edit-values"), sample.values);
  if (Object.keys(values).length) {
    body.values = values;
  }
  return body;
}

function locate(loc) {
  return sampleErrorControl(loc, byId("sample-edit-values"), { sample_id: byId("sample-edit-id"), status: byId("sample-edit-status") });
}

function describeChanges(body) {
  const lines = [];
  if (body.sample_id) {
    lines.push(`sample id → ${body.sample_id}`);
  }
  if (body.status) {
    lines.push(`status → ${humanize(body.status)}`);
  }
  for (const [name, value] of Object.entries(body.values || {})) {
    lines.push(value === null ? `${name} cleared` : `${name} → ${value}`);
  }
  return lines.map((line) => el("li", { text: line }));
}

async function send(body) {
  const { study, sample } = current;
  const path = `/studies/${study.id}/samples/${sample.id}`;
  try {
    const saved = await api.sendJson("PATCH", path, body, { version: sample.version });
    current.pending = null;
    byId("sample-conflict").hidden = true;
    drawSample(study, saved);
    fillForm(study, saved);
    showMessage("sample-form-message", "");
    await loadActivity();
  } catch (error) {
    if (error.status === 412) {
      // Theirs is shown as it is now; mine is kept, to apply on top of it or to drop.
      current.pending = body;
      const theirs = await api.getJson(path);
      drawSample(study, theirs);
      byId("sample-mine").replaceChildren(...describeChanges(body));
      byId("sample-conflict").hidden = false;
      byId("sample-form").hidden = true;
      byId("sample-delete-row").hidden = true;
    } else if (error.status !== 401) {
      showProblem(error, "sample-form-message", locate);
    }
  }
}

function save(event) {
  return whileSending(event, async () => {
    clearErrors(byId("sample-form"), "sample-form-message");
    const body = changes();
    if (!Object.keys(body).length) {
      showMessage("sample-form-message", "Nothing changed.");
      return;
    }
    await send(body);
  });
}

export async function loadSample(study, sampleId, isCurrent) {
  current = { study, sample: null, isCurrent, pending: null };
  byId("sample-back").href = studyPath(study.id, "samples");
  byId("sample-title").textContent = "";
  byId("sample-facts").replaceChildren();
  byId("sample-form").hidden = true;
  byId("sample-delete-row").hidden = true;
  byId("sample-conflict").hidden = true;
  byId("sample-activity").replaceChildren();
  byId("sample-activity-more").hidden = true;
  showMessage("sample-message", "");
  showMessage("sample-activity-message", "");
  try {
    const sample = await api.getJson(`/studies/${study.id}/samples/${encodeURIComponent(sampleId)}`);
    if (!isCurrent()) {
      return;
    }
    drawSample(study, sample);
    fillForm(study, sample);
    await loadActivity();
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("sample-message", error.message);
    }
  }
}

async function deleteSample() {
  const { study, sample } = current;
  const confirmed = await confirmChange({
    title: `Delete sample ${sample.sample_id}?`,
    text: "The sample and its values are deleted; the study's activity log keeps a record of it.",
    action: "Delete",
  });
  if (!confirmed) {
    return;
  }
  try {
    await api.sendJson("DELETE", `/studies/${study.id}/samples/${sample.id}`, undefined, { version: sample.version });
    await go(studyPath(study.id, "samples"), { replace: true });  // Back must not lead to it
  } catch (error) {
    if (error.status === 412) {
      showMessage("sample-message", "Someone changed this sample meanwhile; it is shown as it is now. Delete it again if you still want to.");
      drawSample(study, await api.getJson(`/studies/${study.id}/samples/${sample.id}`));
      fillForm(study, current.sample);
    } else if (error.status !== 401) {
      showMessage("sample-message", error.message);
    }
  }
}

export function wireSample() {
  byId("sample-delete").addEventListener("click", deleteSample);
  addStatusOptions(byId("sample-edit-status"));
  byId("sample-form").addEventListener("submit", save);
  byId("sample-activity-more").addEventListener("click", () => loadActivity(current.activityPage + 1));
  byId("sample-reapply").addEventListener("click", () => send(current.pending));
  byId("sample-discard").addEventListener("click", () => {
    current.pending = null;
    byId("sample-conflict").hidden = true;
    fillForm(current.study, current.sample);
  });
}
