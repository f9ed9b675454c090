// Adding one sample from the samples view (editors and owners of a draft or active study): its id,
// its stage and a control per field; the server's messages beside the control they name.

import * as api from "./api.js";
import { byId } from "./dom.js";
import { clearErrors, placeError, showProblem, whileSending } from "./forms.js";
import { mayEdit } from "./roles.js";
import { go, studyPath } from "./router.js";
import { addStatusOptions, drawValueControls, enteredValues, sampleErrorControl } from "./values.js";

const SAMPLE_ID_TAKEN = "SAMPLE_ID_TAKEN";

let study = null;

/** The form, empty, for `current` when the user may add samples to it; hidden otherwise. */
export function showNewSample(current) {
  study = current;
  const box = byId("sample-new");
  box.hidden = !mayEdit(study);
  if (box.hidden) {
    return;
  }
  const form = byId("sample-new-form");
  form.reset();
  clearErrors(form, "sample-new-message");
  drawValueControls(byId("sample-new-values"), study, {}, "sample-new-value");
}

function locate(loc) {
  return sampleErrorControl(loc, byId("sample-new-values"), { sample_id: byId("sample-new-id"), status: byId("sample-new-status") });
}

async function create() {
  clearErrors(byId("sample-new-form"), "sample-new-message");
  const body = {
    sample_id: byId("sample-new-id").value.trim(),
    status: byId("sample-new-status").value,
    values: enteredValues(byId("sample-new-values")),
  };
  try {
    const created = await api.sendJson("POST", `/studies/${study.id}/samples`, body);
    await go(studyPath(study.id, "samples", created.id));
  } catch (error) {
    if (error.status === 401) {
      return;
    }
    if (error.problem && error.problem.code === SAMPLE_ID_TAKEN) {
      placeError(byId("sample-new-id"), error.message);
      return;
    }
    showProblem(error, "sample-new-message", locate);
  }
}

export function wireNewSample() {
  addStatusOptions(byId("sample-new-status"));
  byId("sample-new-form").addEventListener("submit", (event) => whileSending(event, create));
}
