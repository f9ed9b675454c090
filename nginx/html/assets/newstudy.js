// The new-study view: code, title, description and the sample fields, created in one request; the
// server's messages are placed next to the control they name.

import * as api from "./api.js";
import { byId } from "./dom.js";
import { fieldEditor } from "./fields.js";
import { clearErrors, showProblem, whileSending } from "./forms.js";

const CONTROLS = { code: "new-study-code", title: "new-study-name", description: "new-study-description" };

let editor = null;

/** An empty form; "Add field" adds the fields. The focus goes to the view's heading (router.js), as for
 * every view, the code box one Tab further. */
export function showNewStudy() {
  const form = byId("new-study-form");
  form.reset();
  clearErrors(form, "new-study-message");
  editor = fieldEditor(byId("new-study-fields"), []);
}

/** `["body", "code"]` → its box; `["body", "sample_fields", index, key?]` → that field's control. */
function locate(loc) {
  if (loc[0] !== "body") {
    return null;
  }
  if (loc[1] === "sample_fields" && Number.isInteger(loc[2])) {
    return editor.control(loc[2], loc[3]);
  }
  return CONTROLS[loc[1]] ? byId(CONTROLS[loc[1]]) : null;
}

async function create(onCreated) {
  const form = byId("new-study-form");
  clearErrors(form, "new-study-message");
  const body = {
    code: byId("new-study-code").value.trim(),
    title: byId("new-study-name").value.trim(),
    sample_fields: editor.read(),
  };
  const description = byId("new-study-description").value.trim();
  if (description) {
    body.description = description;
  }
  try {
    onCreated(await api.sendJson("POST", "/studies", body));
  } catch (error) {
    if (error.status !== 401) {
      showProblem(error, "new-study-message", locate);
    }
  }
}

/** `onCreated(study)` takes the user to the new study. */
export function wireNewStudy(onCreated) {
  byId("new-study-form").addEventListener("submit", (event) => whileSending(event, () => create(onCreated)));
}
