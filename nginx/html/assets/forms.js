// The workspace's forms: the server's own messages placed next to the control that caused them, and
// the one confirmation dialog. Nothing here knows a route or a resource.

import { byId, el, showMessage } from "./dom.js";

/** Takes every placed message out of the form (and its message box). */
export function clearErrors(form, messageId) {
  for (const note of form.querySelectorAll(".field-error")) {
    note.remove();
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
    control.removeAttribute("aria-describedby");
  }
  showMessage(messageId, "");
}

let noteCount = 0;

/** A message under `control` (read out with it: aria-describedby); several stack up. */
export function placeError(control, message) {
  noteCount += 1;
  const note = el("p", { className: "field-error", text: message, attributes: { id: `field-error-${noteCount}` } });
  const describedBy = control.getAttribute("aria-describedby");
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", describedBy ? `${describedBy} ${note.id}` : note.id);
  // After the control, or after its label when the label holds it (a checkbox).
  (control.closest("label") || control).after(note);
}

/**
 * The problem's errors next to their controls: `locate(loc, message)` names the control of each
 * error (or null). The detail, and every error without a control, go to the form's message box.
 */
export function showProblem(error, messageId, locate) {
  const problem = error.problem;
  const errors = problem && Array.isArray(problem.errors) ? problem.errors : [];
  const unplaced = [];
  for (const item of errors) {
    const control = Array.isArray(item.loc) ? locate(item.loc, item.msg) : null;
    if (control) {
      placeError(control, item.msg);
    } else {
      unplaced.push(item.msg);
    }
  }
  // "…; see `errors`." speaks to an API caller: here the errors are beside their controls.
  const detail = problem && (problem.detail || problem.title || "").replace(/[;:,]? see `errors`\.?$/, ".");
  const placed = errors.length > unplaced.length ? "See the messages next to the fields." : "";
  showMessage(messageId, errors.length ? [detail, placed, ...unplaced].filter(Boolean).join(" ") : error.message);
}

/**
 * Asks before a change that matters: resolves true when the user confirms. `text` says what the
 * change does and allows, `action` is the confirming button's label.
 */
export function confirmChange({ title, text, action }) {
  const dialog = byId("confirm");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-yes").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

/** The button that sent the form is disabled until `work` settles. */
export async function whileSending(event, work) {
  event.preventDefault();
  const button = event.submitter;
  if (button) {
    button.disabled = true;
  }
  try {
    await work();
  } finally {
    if (button) {
      button.disabled = false;
    }
  }
}
