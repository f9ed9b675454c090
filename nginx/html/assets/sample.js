// One sample's detail: its id, status, every field's value (with its unit) and when it changed.

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { studyPath } from "./router.js";
import { formatValue } from "./samples.js";

function facts(study, sample) {
  const pairs = [
    ["Sample id", sample.sample_id],
    ["Status", humanize(sample.status)],
    ...study.sample_fields.map((field) => [field.unit ? `${field.name} [${field.unit}]` : field.name, formatValue(sample.values[field.name])]),
    ["Created", formatWhen(sample.created_at)],
    ["Last changed", `${formatWhen(sample.updated_at)} (version ${sample.version})`],
    ["From a file", sample.source_file_id ? "yes" : "no, entered directly"],
  ];
  return pairs.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value || "—" })]);
}

export async function loadSample(study, sampleId, isCurrent) {
  byId("sample-back").href = studyPath(study.id, "samples");
  byId("sample-title").textContent = "";
  byId("sample-facts").replaceChildren();
  showMessage("sample-message", "");
  try {
    const sample = await api.getJson(`/studies/${study.id}/samples/${encodeURIComponent(sampleId)}`);
    if (!isCurrent()) {
      return;
    }
    byId("sample-title").textContent = `Sample ${sample.sample_id}`;
    byId("sample-facts").replaceChildren(...facts(study, sample));
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("sample-message", error.message);
    }
  }
}
