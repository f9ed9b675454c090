// A study's settings view: its details, its sample fields (the field editor), its status and, for a
// draft, deleting it. Every write carries the version read (If-Match); editors and owners see the
// forms, owners the status moves, everyone else the same facts as text.

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { fieldEditor, fieldsTable } from "./fields.js";
import { clearErrors, confirmChange, showProblem, whileSending } from "./forms.js";
import { STATUS_MEANING, STATUS_MOVES, isOwner, mayEdit } from "./roles.js";

const CHANGED_MEANWHILE = "Someone changed this study meanwhile; it is shown as it is now. Make your change again.";

let current = null;  // { study, editor, onStudy, onDeleted }

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: value })];
}

function renderDetails(study) {
  byId("details-facts").replaceChildren(
    ...fact("Code", study.code),
    ...fact("Title", study.title),
    ...fact("Description", study.description || "—"),
    ...fact("Created", formatWhen(study.created_at)),
  );
  const form = byId("details-form");
  form.hidden = !mayEdit(study);
  byId("details-facts").hidden = !form.hidden;  // the form shows the same
  clearErrors(form, "details-message");
  byId("details-code").value = study.code;
  byId("details-title").value = study.title;
  byId("details-description").value = study.description || "";
}

function renderFields(study) {
  const editable = mayEdit(study);
  byId("fields-rules").textContent = !editable
    ? ""
    : study.sample_count > 0
      ? "This study has samples: only changes they all still satisfy are accepted (add an optional field, add choices, loosen a bound, change a unit or description)."
      : "No samples yet: the fields may change in any way.";
  byId("fields-view").replaceChildren(editable ? "" : fieldsTable(study.sample_fields));
  byId("fields-form").hidden = !editable;
  clearErrors(byId("fields-form"), "fields-message");
  current.editor = editable ? fieldEditor(byId("fields-editor"), study.sample_fields) : null;
}

function moveButton(study, { to, action }) {
  const button = el("button", { text: action, attributes: { type: "button", "data-status": to } });
  button.addEventListener("click", () => changeStatus(study, to, action));
  return button;
}

function renderLifecycle(study) {
  byId("lifecycle-now").textContent = STATUS_MEANING[study.status];
  showMessage("lifecycle-message", "");
  const buttons = isOwner(study) ? STATUS_MOVES[study.status].map((move) => moveButton(study, move)) : [];
  if (isOwner(study) && study.status === "draft") {
    const remove = el("button", { className: "danger", text: "Delete this draft", attributes: { type: "button" } });
    remove.addEventListener("click", () => deleteDraft(study));
    buttons.push(remove);
  }
  byId("lifecycle-moves").replaceChildren(...buttons);
}

/** Draws the settings of `study`; `onStudy(study)` hears of every change, `onDeleted(study)` of the end. */
export function renderSettings(study, { onStudy, onDeleted }) {
  current = { study, editor: null, onStudy, onDeleted };
  renderDetails(study);
  renderFields(study);
  renderLifecycle(study);
}

function changed(study) {
  current.onStudy(study);
  renderSettings(study, current);
}

/** A 412: the study is read again and drawn as it is now, with the message in `messageId`. */
async function reloadAfterConflict(messageId) {
  const study = await api.getJson(`/studies/${current.study.id}`);
  changed(study);
  showMessage(messageId, CHANGED_MEANWHILE);
}

async function write(messageId, form, work, locate) {
  if (form) {
    clearErrors(form, messageId);
  }
  try {
    changed(await work(current.study));
  } catch (error) {
    if (error.status === 412) {
      await reloadAfterConflict(messageId);
    } else if (error.status !== 401) {
      showProblem(error, messageId, locate);
    }
  }
}

function saveDetails(event) {
  const body = {
    code: byId("details-code").value.trim(),
    title: byId("details-title").value.trim(),
    description: byId("details-description").value.trim() || null,
  };
  const controls = { code: "details-code", title: "details-title", description: "details-description" };
  return whileSending(event, () =>
    write(
      "details-message",
      byId("details-form"),
      (study) => api.sendJson("PATCH", `/studies/${study.id}`, body, { version: study.version }),
      (loc) => (loc[0] === "body" && controls[loc[1]] ? byId(controls[loc[1]]) : null),
    ),
  );
}

/** Where a field error belongs: `["body", index, key?]`, or an incompatible change named "name: …". */
function fieldControl(editor, loc, message) {
  if (loc.length >= 2 && Number.isInteger(loc[1])) {
    return editor.control(loc[1], loc[2]);
  }
  const named = /^([A-Za-z][A-Za-z0-9_]*): /.exec(message);
  return named ? editor.rowNamed(named[1]) : null;
}

function saveFields(event) {
  const editor = current.editor;
  const fields = editor.read();
  return whileSending(event, () =>
    write(
      "fields-message",
      byId("fields-form"),
      (study) => api.sendJson("PUT", `/studies/${study.id}/sample-fields`, fields, { version: study.version }),
      (loc, message) => fieldControl(editor, loc, message),
    ),
  );
}

async function changeStatus(study, to, action) {
  const confirmed = await confirmChange({
    title: `${action} ${study.code}?`,
    text: STATUS_MEANING[to],
    action,
  });
  if (confirmed) {
    await write(
      "lifecycle-message",
      null,
      () => api.sendJson("POST", `/studies/${study.id}/status`, { status: to }, { version: study.version }),
      () => null,
    );
  }
}

async function deleteDraft(study) {
  const confirmed = await confirmChange({
    title: `Delete ${study.code}?`,
    text: "The draft, its sample fields and any rejected uploads are deleted for good. This cannot be undone.",
    action: "Delete",
  });
  if (!confirmed) {
    return;
  }
  try {
    await api.sendJson("DELETE", `/studies/${study.id}`, undefined, { version: study.version });
    current.onDeleted(study);
  } catch (error) {
    if (error.status === 412) {
      await reloadAfterConflict("lifecycle-message");
    } else if (error.status !== 401) {
      showMessage("lifecycle-message", error.message);
    }
  }
}

export function wireSettings() {
  byId("details-form").addEventListener("submit", saveDetails);
  byId("fields-form").addEventListener("submit", saveFields);
}

/** The study's status and the user's role, in words (under the study's title). */
export function standing(study) {
  return `${humanize(study.status)} · your role: ${humanize(study.my_role)}${mayEdit(study) ? "" : " · read-only for you"}`;
}
