// A sample's values in the page: shown as text, entered through one control per field (the server
// checks and normalises every value: "4,5" is 4.5 to it), and read back for a create or a merge.

import { el, humanize } from "./dom.js";
import { fieldLabel } from "./fields.js";

// A sample's statuses (src/study/constants.py's SampleStatus), in the order a sample moves through them.
const SAMPLE_STATUSES = ["registered", "received", "stored", "consumed", "discarded"];

export function formatValue(value) {
  if (value === null || value === undefined) {
    return "";
  }
  if (typeof value === "boolean") {
    return value ? "yes" : "no";
  }
  return typeof value === "number" ? value.toLocaleString("en", { maximumFractionDigits: 20 }) : String(value);
}

/** The statuses as options of `select` (after the options it already has). */
export function addStatusOptions(select) {
  select.append(...SAMPLE_STATUSES.map((status) => el("option", { text: humanize(status), attributes: { value: status } })));
}

const asText = (value) => (value === null || value === undefined ? "" : String(value));

/** The control for one field's value, labelled; `prefix` keeps ids apart between forms. */
function valueControl(field, value, prefix) {
  const id = `${prefix}-${field.name}`;
  let control;
  if (field.type === "choice" || field.type === "boolean") {
    const options = field.type === "choice" ? field.choices.map((choice) => [choice, choice]) : [["true", "yes"], ["false", "no"]];
    control = el("select", { attributes: { id } }, [["", "—"], ...options].map(([key, text]) => el("option", { text, attributes: { value: key } })));
  } else {
    control = el("input", { attributes: { id, type: field.type === "date" ? "date" : "text" } });
  }
  control.dataset.field = field.name;
  control.value = asText(value);
  return el("div", { className: "constraint" }, [el("label", { text: fieldLabel(field), attributes: { for: id } }), control]);
}

/** One control per field of `study` in `container`, filled with `values`. */
export function drawValueControls(container, study, values, prefix) {
  container.replaceChildren(...study.sample_fields.map((field) => valueControl(field, values[field.name], prefix)));
}

/**
 * The values entered in `container`: against `before` (an edit), only those that changed, an
 * emptied one as null (cleared); without (a new sample), every one filled in.
 */
export function enteredValues(container, before = null) {
  const values = {};
  for (const control of container.querySelectorAll("[data-field]")) {
    const entered = control.value.trim();
    if (before === null) {
      if (entered !== "") {
        values[control.dataset.field] = entered;
      }
    } else if (entered !== asText(before[control.dataset.field])) {
      values[control.dataset.field] = entered === "" ? null : entered;
    }
  }
  return values;
}

/**
 * Where the server's error about a sample write belongs: `["body", "values", name]` → that field's
 * control in `container`, `["body", key]` → `controls[key]` (sample_id, status); else null.
 */
export function sampleErrorControl(loc, container, controls) {
  if (loc[0] !== "body") {
    return null;
  }
  if (loc[1] === "values" && loc[2] !== undefined) {
    return container.querySelector(`[data-field="${CSS.escape(String(loc[2]))}"]`);
  }
  return controls[loc[1]] || null;
}
