// One study in the workspace: its heading, its tabs (overview, samples, files, members, settings;
// a sample's detail under samples) and which view each route draws. The study itself is read by
// app.js; each view's module fetches and draws its own data.

import { byId } from "./dom.js";
import { loadFiles } from "./files.js";
import { stopImports, watchImports } from "./imports.js";
import { loadMembers } from "./members.js";
import { showNewSample } from "./newsample.js";
import { isOwner, mayEdit } from "./roles.js";
import { studyPath } from "./router.js";
import { loadSample } from "./sample.js";
import { loadSamples } from "./samples.js";
import { renderSettings, standing } from "./settings.js";
import { loadStudyInvitations } from "./studyinvitations.js";

/** The title, the status and role line, the tabs' links and whether uploads are offered. */
export function drawStudyHeading(study) {
  byId("study-title").textContent = `${study.code} — ${study.title}`;
  byId("study-standing").textContent = standing(study);
  for (const link of byId("study-tabs").querySelectorAll("a")) {
    link.href = studyPath(study.id, link.dataset.tab);
  }
  const uploads = mayEdit(study);
  byId("upload-form").hidden = !uploads;
  byId("upload-read-only").hidden = uploads;
  byId("upload-read-only").textContent = uploads
    ? ""
    : "Uploading needs the editor or owner role in a draft or active study; the files and downloads below are yours to read.";
}

/** What a study's view is called: its tab's name, or the sample's heading. */
export function studyViewName(route) {
  if (route.tab === "sample") {
    return byId("sample-title").textContent || "Sample";
  }
  const link = byId("study-tabs").querySelector(`a[data-tab="${route.tab}"]`);
  return link ? link.textContent : "";
}

function selectTab(tab) {
  const shown = tab === "sample" ? "samples" : tab;
  for (const part of byId("study").querySelectorAll("[data-tabs]")) {
    part.hidden = !part.dataset.tabs.split(" ").includes(tab);
  }
  for (const link of byId("study-tabs").querySelectorAll("a")) {
    if (link.dataset.tab === shown) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
}

/**
 * Draws `route`'s tab of `study`. `app` gives `refreshFigures()` (overview and files), `uploadActions`
 * (a file's downloads), `afterImport()` (an import ended: figures and files again), `readStudy()` (the study as it is now), `onStudy(study)` and
 * `onDeleted(study)`, and `isCurrent()`: false once the user went elsewhere, so that a late answer
 * is dropped.
 */
export async function showStudyTab(study, route, app) {
  selectTab(route.tab);
  // The upload panel (overview and files) shows the imports still running, after a reload too.
  const imports = { isCurrent: app.isCurrent, downloadErrors: app.uploadActions.downloadErrors, afterImport: app.afterImport };
  switch (route.tab) {
    case "home":
      return Promise.all([app.refreshFigures(), watchImports(study, imports)]);
    case "files":
      // The figures too: the upload form's panel shares them (and they notice a lost membership).
      return Promise.all([app.refreshFigures(), loadFiles(study, app.isCurrent, app.uploadActions), watchImports(study, imports)]);
    case "samples":
      showNewSample(study);
      return loadSamples(study, app.isCurrent);
    case "sample":
      return loadSample(study, route.sampleId, app.isCurrent);
    case "members":
      return Promise.all([loadMembers(study, app.isCurrent), loadStudyInvitations(study, app.isCurrent, isOwner(study))]);
    case "settings": {
      // Read again: its version and sample count decide what may be sent.
      const fresh = await app.readStudy();
      if (fresh && app.isCurrent()) {
        renderSettings(fresh, app);
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Nothing of the last user stays in the workspace's views after sign-out, not even hidden. */
export function clearWorkspace() {
  stopImports();
  for (const id of ["study-standing", "sample-title", "lifecycle-now", "samples-position", "files-position", "members-rule"]) {
    byId(id).textContent = "";
  }
  for (const id of ["samples-filters", "samples-filter-field", "sample-facts", "sample-edit-values", "sample-mine", "sample-activity", "sample-new-values", "details-facts", "fields-editor", "fields-view", "lifecycle-moves", "new-study-fields"]) {
    byId(id).replaceChildren();
  }
  byId("samples-table").tHead.rows[0].replaceChildren();  // the study's field names
  for (const id of ["samples-table", "members-table", "files-table", "invitations-table"]) {
    byId(id).tBodies[0].replaceChildren();
  }
  for (const id of ["samples-filter", "samples-field-filter", "sample-form", "sample-new-form", "details-form", "new-study-form", "invite-form"]) {
    byId(id).reset();
  }
  byId("sample-conflict").hidden = true;
  byId("sample-activity-more").hidden = true;
  byId("invite-done").hidden = true;
  byId("invite-done").textContent = "";
}
