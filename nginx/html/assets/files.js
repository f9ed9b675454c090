// A study's files view: every upload, newest first, a page at a time: who uploaded it (by name),
// when, its mode, counts and status, its downloads, and for owners of a writable study a delete
// (after a confirmation; the server's refusal beside the button).

import * as api from "./api.js";
import { byId, drawPager, el, formatWhen, humanize, numberCell, showMessage } from "./dom.js";
import { confirmChange, placeError } from "./forms.js";
import { answerOf } from "./imports.js";
import { isOwner, mayEdit } from "./roles.js";
import { actionButton, renderReport } from "./views.js";

const FILES_PAGE_SIZE = 50;
const MEMBERS_PAGE_SIZE = 100;

let current = null;  // { study, isCurrent, actions, page }

/** Its status; for a running import, its rows read as the list was read (the panel above follows it). */
function statusText(item) {
  const { rows_read: read, rows_total: total } = item.progress;
  if (item.status !== "importing") {
    return humanize(item.status);
  }
  return total === null ? `Importing (${read.toLocaleString()} rows read)` : `Importing (${read.toLocaleString()} of ${total.toLocaleString()})`;
}

function fileRow(item, names, deletable) {
  const { downloadOriginal, downloadErrors } = current.actions;
  const report = actionButton("Report", () => showReport(item));
  report.setAttribute("aria-label", `Report of ${item.filename}`);
  const actions = el("td", { className: "actions" }, [report, actionButton("File", () => downloadOriginal(item))]);
  if (item.status === "rejected") {
    actions.append(actionButton("errors.csv", () => downloadErrors(item.id)));
  }
  if (deletable) {
    const remove = actionButton("Delete", () => deleteFile(item, remove));
    remove.setAttribute("aria-label", `Delete ${item.filename}`);
    actions.append(remove);
  }
  const who = item.uploaded_by === null ? "a deleted account" : names.get(item.uploaded_by) || "a former member";
  return el("tr", { attributes: { "data-file-id": item.id } }, [
    el("td", { text: item.filename }),
    el("td", { text: statusText(item) }),
    el("td", { text: item.mode }),
    el("td", { text: who }),
    el("td", { text: formatWhen(item.created_at) }),
    numberCell(item.report.rows),
    numberCell(item.report.created),
    numberCell(item.report.updated),
    numberCell(item.report.rejected),
    actions,
  ]);
}

async function fetchFiles() {
  const { study, isCurrent, page } = current;
  try {
    // Uploaders by name: the members' list (one page covers a study's team).
    const [files, members] = await Promise.all([
      api.getJson(`/studies/${study.id}/sample-files?page=${page}&page_size=${FILES_PAGE_SIZE}`),
      api.getJson(`/studies/${study.id}/members?page_size=${MEMBERS_PAGE_SIZE}`),
    ]);
    if (!isCurrent() || current.study !== study) {
      return;
    }
    const names = new Map(members.items.map((member) => [member.user_id, member.full_name]));
    const deletable = isOwner(study) && mayEdit(study);
    byId("files-table").tBodies[0].replaceChildren(...files.items.map((item) => fileRow(item, names, deletable)));
    byId("files-empty").hidden = files.items.length > 0;
    drawPager(files, "files", "files");
    showMessage("files-message", "");
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("files-message", error.message);
    }
  }
}

/**
 * A file's import report (its errors row by row), drawn where an upload's report is, above: the
 * same headline and table as right after the upload.
 */
async function showReport(item) {
  try {
    const file = await api.getJson(`/sample-files/${item.id}`);
    if (!file.report) {
      showMessage("files-message", `${file.filename} has no report: its import is ${humanize(file.status).toLowerCase()}.`);
      return;
    }
    // As the upload answered: a rejected file's answer (422) names it for its errors.csv.
    renderReport(answerOf(file), current.actions.downloadErrors);
    byId("upload-result").scrollIntoView({ block: "nearest" });
  } catch (error) {
    if (error.status !== 401) {
      showMessage("files-message", error.message);
    }
  }
}

async function deleteFile(item, button) {
  const confirmed = await confirmChange({
    title: `Delete ${item.filename}?`,
    text: "The stored file, its record and its errors are deleted. Samples it imported stay (a file is deletable once they are gone).",
    action: "Delete",
  });
  if (!confirmed) {
    return;
  }
  try {
    await api.sendJson("DELETE", `/sample-files/${item.id}`);
    await fetchFiles();
  } catch (error) {
    if (error.status !== 401) {
      placeError(button, error.message);
    }
  }
}

/** The files of `study`, first page; `actions` downloads a file or its errors.csv (app.js's). */
export function loadFiles(study, isCurrent, actions) {
  current = { study, isCurrent, actions, page: 1 };
  return fetchFiles();
}

/** After an upload on the files view: the list again, from its first page. */
export function reloadFiles() {
  if (current) {
    current.page = 1;
    return fetchFiles();
  }
  return undefined;
}

export function wireFiles() {
  byId("files-previous").addEventListener("click", () => {
    current.page = Math.max(1, current.page - 1);
    fetchFiles();
  });
  byId("files-next").addEventListener("click", () => {
    current.page += 1;
    fetchFiles();
  });
}
