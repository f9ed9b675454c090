// The sample field editor (a study's typed fields: name, type, required, unit, description and the
// constraints of each type), and the same fields as a read-only table. The editor checks nothing:
// the server's own rules and messages decide (src/study/sample_validation.py), placed next to the
// control they name.

import { el, humanize } from "./dom.js";

export const FIELD_TYPES = ["text", "integer", "number", "boolean", "date", "datetime", "choice"];
// The keys each type may have beyond name, type, required, unit and description.
const TYPE_KEYS = { text: ["max_length", "pattern"], integer: ["min", "max"], number: ["min", "max"], choice: ["choices"] };
const CONSTRAINTS = ["max_length", "pattern", "min", "max", "choices"];

let rowCount = 0;

function input(id, label, { type = "text", value = "", attributes = {} } = {}) {
  const control = el("input", { attributes: { id, type, ...attributes } });
  control.value = value ?? "";
  return [el("label", { text: label, attributes: { for: id } }), control];
}

/** One field's controls; `constraint` boxes show only for the types they belong to. */
function fieldRow(field, onRemove) {
  rowCount += 1;
  const id = (key) => `field-${rowCount}-${key}`;
  const typeSelect = el(
    "select",
    { attributes: { id: id("type"), "data-key": "type" } },
    FIELD_TYPES.map((type) => el("option", { text: type, attributes: { value: type } })),
  );
  typeSelect.value = field.type || "text";
  const required = el("input", { attributes: { id: id("required"), type: "checkbox", "data-key": "required" } });
  required.checked = Boolean(field.required);
  const box = (key, children) => el("div", { className: "constraint", attributes: { "data-constraint": key } }, children);
  const choices = el("textarea", { attributes: { id: id("choices"), rows: 3, "data-key": "choices" } });
  choices.value = (field.choices || []).join("\n");
  const remove = el("button", { className: "secondary", text: "Remove field", attributes: { type: "button" } });
  const legend = el("legend", { text: field.name ? `Field ${field.name}` : "New field" });
  const row = el("fieldset", { className: "field-row" }, [
    legend,
    el("div", { className: "field-grid" }, [
      box("name", input(id("name"), "Name", { value: field.name, attributes: { "data-key": "name", maxlength: 64 } })),
      box("type", [el("label", { text: "Type", attributes: { for: id("type") } }), typeSelect]),
      box("unit", input(id("unit"), "Unit", { value: field.unit, attributes: { "data-key": "unit", maxlength: 50 } })),
      box("required", [el("label", { className: "check" }, [required, " Required"])]),
      box("min", input(id("min"), "Minimum", { type: "number", value: field.min, attributes: { "data-key": "min", step: "any" } })),
      box("max", input(id("max"), "Maximum", { type: "number", value: field.max, attributes: { "data-key": "max", step: "any" } })),
      box("max_length", input(id("max_length"), "Max length", { type: "number", value: field.max_length, attributes: { "data-key": "max_length", min: 1 } })),
      box("pattern", input(id("pattern"), "Pattern (regular expression)", { value: field.pattern, attributes: { "data-key": "pattern" } })),
      box("choices", [el("label", { text: "Choices, one per line", attributes: { for: id("choices") } }), choices]),
      box("description", input(id("description"), "Description", { value: field.description, attributes: { "data-key": "description" } })),
    ]),
    remove,
  ]);
  const showTypeKeys = () => {
    const keys = TYPE_KEYS[typeSelect.value] || [];
    for (const key of CONSTRAINTS) {
      row.querySelector(`[data-constraint="${key}"]`).hidden = !keys.includes(key);
    }
  };
  typeSelect.addEventListener("change", showTypeKeys);
  remove.addEventListener("click", () => onRemove(row));
  showTypeKeys();
  return row;
}

function text(row, key) {
  return row.querySelector(`[data-key="${key}"]`).value.trim();
}

/** A row as the API's field definition: only the keys its type has, and only those filled in. */
function definitionOf(row) {
  const type = row.querySelector('[data-key="type"]').value;
  const definition = { name: text(row, "name"), type, required: row.querySelector('[data-key="required"]').checked };
  for (const key of ["unit", "description"]) {
    if (text(row, key)) {
      definition[key] = text(row, key);
    }
  }
  for (const key of TYPE_KEYS[type] || []) {
    const value = text(row, key);
    if (key === "choices") {
      definition.choices = value.split("\n").map((choice) => choice.trim()).filter(Boolean);
    } else if (value !== "") {
      definition[key] = key === "pattern" ? value : Number(value);
    }
  }
  return definition;
}

/**
 * An editor of `fields` in `container`: `read()` gives the definitions to send, `control(index, key)`
 * the control of one key of one field (for the server's errors), `rowNamed(name)` a field's name box.
 */
export function fieldEditor(container, fields) {
  const rows = el("div", { className: "field-rows" });
  const remove = (row) => row.remove();
  const add = el("button", { className: "secondary", text: "Add field", attributes: { type: "button" } });
  add.addEventListener("click", () => {
    const row = fieldRow({}, remove);
    rows.append(row);
    row.querySelector('[data-key="name"]').focus();
  });
  rows.append(...fields.map((field) => fieldRow(field, remove)));
  container.replaceChildren(rows, add);
  const rowAt = (index) => rows.children[index] || null;
  return {
    read: () => [...rows.children].map(definitionOf),
    control(index, key) {
      const row = rowAt(index);
      if (!row) {
        return null;
      }
      const wanted = key && row.querySelector(`[data-key="${key}"]`);
      return wanted || row.querySelector('[data-key="name"]');
    },
    rowNamed(name) {
      const row = [...rows.children].find((candidate) => text(candidate, "name").toLowerCase() === name.toLowerCase());
      return row ? row.querySelector('[data-key="name"]') : null;
    },
  };
}

/** A field's name as a column heading: with its unit, as the templates and exports write it. */
export function fieldLabel(field) {
  return field.unit ? `${field.name} [${field.unit}]` : field.name;
}

/** What a field allows beyond its type, in words. */
export function describeConstraints(field) {
  const parts = [];
  if (field.min !== undefined && field.max !== undefined) {
    parts.push(`${field.min} to ${field.max}`);
  } else if (field.min !== undefined) {
    parts.push(`at least ${field.min}`);
  } else if (field.max !== undefined) {
    parts.push(`at most ${field.max}`);
  }
  if (field.max_length !== undefined) {
    parts.push(`at most ${field.max_length} characters`);
  }
  if (field.pattern !== undefined) {
    parts.push(`matches ${field.pattern}`);
  }
  if (field.choices) {
    parts.push(`one of: ${field.choices.join(", ")}`);
  }
  return parts.join("; ");
}

/** The fields for reading only: no control at all. */
export function fieldsTable(fields) {
  if (!fields.length) {
    return el("p", { className: "muted", text: "This study has no sample fields yet." });
  }
  const head = ["Name", "Type", "Required", "Unit", "Allowed values", "Description"];
  return el("div", { className: "table-wrap" }, [
    el("table", { attributes: { id: "fields-table" } }, [
      el("thead", {}, [el("tr", {}, head.map((name) => el("th", { text: name, attributes: { scope: "col" } })))]),
      el(
        "tbody",
        {},
        fields.map((field) =>
          el("tr", {}, [
            el("td", { text: field.name }),
            el("td", { text: humanize(field.type) }),
            el("td", { text: field.required ? "Yes" : "No" }),
            el("td", { text: field.unit || "" }),
            el("td", { text: describeConstraints(field) }),
            el("td", { text: field.description || "" }),
          ]),
        ),
      ),
    ]),
  ]);
}
