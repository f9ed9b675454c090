// One sample's detail: its id, status, every field's value (with its unit) and when it changed; for
// editors of a writable study, a form that sends only what changed, with the version read
// (If-Match). When someone else changed the sample meanwhile (412), their version is shown and the
// user chooses: apply their own changes to it, or drop them.

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { fieldLabel } from "./fields.js";
import { clearErrors, showProblem, whileSending } from "./forms.js";
import { mayEdit } from "./roles.js";
import { studyPath } from "./router.js";
import { addStatusOptions, formatValue } from "./samples.js";

let current = null;  // { study, sample, isCurrent, pending }

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

/** The control for one field's value, as the type reads best; the server checks and normalises it. */
function valueControl(field, value) {
  const id = `sample-value-${field.name}`;
  let control;
  if (field.type === "choice" || field.type === "boolean") {
    const options = field.type === "choice" ? field.choices.map((choice) => [choice, choice]) : [["true", "yes"], ["false", "no"]];
    control = el("select", { attributes: { id } }, [["", "—"], ...options].map(([key, text]) => el("option", { text, attributes: { value: key } })));
  } else {
    control = el("input", { attributes: { id, type: field.type === "date" ? "date" : "text" } });
  }
  control.dataset.field = field.name;
  control.value = value === null || value === undefined ? "" : String(value);
  return el("div", { className: "constraint" }, [el("label", { text: fieldLabel(field), attributes: { for: id } }), control]);
}

function fillForm(study, sample) {
  const form = byId("sample-form");
  form.hidden = !mayEdit(study);
  clearErrors(form, "sample-form-message");
  byId("sample-edit-id").value = sample.sample_id;
  byId("sample-edit-status").value = sample.status;
  byId("sample-edit-values").replaceChildren(...study.sample_fields.map((field) => valueControl(field, sample.values[field.name])));
}

function drawSample(study, sample) {
  current.sample = sample;
  byId("sample-title").textContent = `Sample ${sample.sample_id}`;
  byId("sample-facts").replaceChildren(...facts(study, sample));
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
  const values = {};
  for (const control of byId("sample-edit-values").querySelectorAll("[data-field]")) {
    const before = sample.values[control.dataset.field];
    const shown = before === null || before === undefined ? "" : String(before);
    if (control.value.trim() !== shown) {
      values[control.dataset.field] = control.value.trim() === "" ? null : control.value.trim();
    }
  }
  if (Object.keys(values).length) {
    body.values = values;
  }
  return body;
}

function locate(loc) {
  if (loc[0] !== "body") {
    return null;
  }
  if (loc[1] === "values" && loc[2] !== undefined) {
    return byId("sample-edit-values").querySelector(`[data-field="${CSS.escape(String(loc[2]))}"]`);
  }
  return { sample_id: byId("sample-edit-id"), status: byId("sample-edit-status") }[loc[1]] || null;
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
  } catch (error) {
    if (error.status === 412) {
      // Theirs is shown as it is now; mine is kept, to apply on top of it or to drop.
      current.pending = body;
      const theirs = await api.getJson(path);
      drawSample(study, theirs);
      byId("sample-mine").replaceChildren(...describeChanges(body));
      byId("sample-conflict").hidden = false;
      byId("sample-form").hidden = true;
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
  byId("sample-conflict").hidden = true;
  showMessage("sample-message", "");
  try {
    const sample = await api.getJson(`/studies/${study.id}/samples/${encodeURIComponent(sampleId)}`);
    if (!isCurrent()) {
      return;
    }
    drawSample(study, sample);
    fillForm(study, sample);
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("sample-message", error.message);
    }
  }
}

export function wireSample() {
  addStatusOptions(byId("sample-edit-status"));
  byId("sample-form").addEventListener("submit", save);
  byId("sample-reapply").addEventListener("click", () => send(current.pending));
  byId("sample-discard").addEventListener("click", () => {
    current.pending = null;
    byId("sample-conflict").hidden = true;
    fillForm(current.study, current.sample);
  });
}
