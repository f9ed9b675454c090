// Imports that outlive their upload's answer (202, asked for with `Prefer: respond-async`): each
// one's progress read from its record (rows read of the file's rows), polled until it ends, then its
// outcome drawn as the upload's own answer would have been (report, counts, duplicate, failure).
// Followed again after a reload or on coming back to the study: the study's files still `queued`
// or `importing` are looked up whenever its overview or files tab is drawn.

import * as api from "./api.js";
import { byId, el } from "./dom.js";
import { placeError } from "./forms.js";
import { mayEdit } from "./roles.js";
import { actionButton, renderReport } from "./views.js";

// The record is read every second at first, then less often (the job writes its progress at
// least every IMPORT_PROGRESS_SECONDS anyway); after a failed read, at most every 30 s.
const FIRST_POLL_MILLISECONDS = 1000;
const POLL_GROWTH = 1.25;
const LONGEST_POLL_MILLISECONDS = 5000;
const LONGEST_RETRY_MILLISECONDS = 30000;
// Unfinished imports are the newest files: the first page of the list holds them.
const RESUME_PAGE_SIZE = 20;
const UNFINISHED = ["queued", "importing"];

const followed = new Map();  // file id → { path, timer, row }
let context = null;  // { study, isCurrent, downloadErrors, afterImport }

/** A record as the upload would have answered with it, for views.js's renderReport. */
export function answerOf(record) {
  const rejected = record.status === "rejected";
  const status = rejected ? 422 : record.duplicate_of ? 200 : 201;
  return { status, body: { ...record, sample_file_id: rejected ? record.id : null } };
}

function phaseOf(record) {
  if (record.cancel_requested) {
    return "Cancelling…";
  }
  if (record.status === "queued") {
    return "Queued: waiting for its turn";
  }
  const { rows_read: read, rows_total: total } = record.progress;
  return total === null ? `Importing: ${read.toLocaleString()} rows read` : `Importing: ${read.toLocaleString()} of ${total.toLocaleString()}`;
}

function drawProgress(entry, record) {
  const { rows_read: read, rows_total: total } = record.progress;
  entry.phase.textContent = phaseOf(record);
  if (total === null || record.status === "queued") {
    entry.bar.removeAttribute("value");  // indeterminate: how many rows the file has is not known
  } else {
    // rows_total is what the file claims (docs/api/async-imports.md): a file may hold more than it says.
    entry.bar.max = Math.max(total, read, 1);
    entry.bar.value = read;
  }
}

function newEntry(record) {
  const phase = el("span", { className: "import-phase" });
  const bar = el("progress", { attributes: { "aria-label": `Import of ${record.filename}` } });
  const row = el("li", { attributes: { "data-file-id": record.id } }, [el("span", { className: "import-file", text: record.filename }), phase, bar]);
  if (mayEdit(context.study)) {
    const cancel = actionButton("Cancel", () => cancelImport(record.id, cancel));
    cancel.setAttribute("aria-label", `Cancel the import of ${record.filename}`);
    row.append(cancel);
  }
  byId("imports-running").append(row);
  return { row, phase, bar };
}

/** Follows an import whose record is at `path` (the upload's `Location`, under the API). */
export function followImport(record, path = `/sample-files/${record.id}`) {
  if (context === null || followed.has(record.id)) {
    return;
  }
  const entry = { path, timer: null, ...newEntry(record) };
  followed.set(record.id, entry);
  drawProgress(entry, record);
  schedule(record.id, FIRST_POLL_MILLISECONDS);
}

function schedule(fileId, delay) {
  const entry = followed.get(fileId);
  entry.timer = setTimeout(() => poll(fileId, delay), delay);
}

async function poll(fileId, delay) {
  const entry = followed.get(fileId);
  if (!entry) {
    return;
  }
  if (!context.isCurrent()) {
    stopImports();  // picked up again when the study is shown again
    return;
  }
  let record;
  try {
    record = await api.getJson(entry.path);
  } catch (error) {
    if (error.status === 404 || error.status === 401) {
      forget(fileId);  // deleted, or the session ended (the page went to sign-in)
      return;
    }
    if (followed.get(fileId) === entry) {
      entry.phase.textContent = `${error.message} Trying again…`;
      schedule(fileId, Math.min(delay * 2, LONGEST_RETRY_MILLISECONDS));
    }
    return;
  }
  if (followed.get(fileId) !== entry) {
    return;  // stopped meanwhile
  }
  if (UNFINISHED.includes(record.status)) {
    drawProgress(entry, record);
    schedule(fileId, Math.min(delay * POLL_GROWTH, LONGEST_POLL_MILLISECONDS));
    return;
  }
  finish(record);
}

function forget(fileId) {
  const entry = followed.get(fileId);
  if (entry) {
    clearTimeout(entry.timer);
    entry.row.remove();
    followed.delete(fileId);
  }
}

/** The import ended: its outcome drawn where an upload's answer is, the figures and files again. */
function finish(record) {
  forget(record.id);
  if (context === null) {
    return;  // signed out, or another study, while its last read or a cancel was on the way
  }
  if (record.status === "imported" || record.status === "rejected") {
    renderReport(answerOf(record), context.downloadErrors);
  } else {
    const text =
      record.status === "cancelled"
        ? `The import of ${record.filename} was cancelled, nothing imported.`
        : `Nothing was imported: ${record.failure ? record.failure.detail : "the import failed."}`;
    byId("upload-result").replaceChildren(el("p", { className: record.status === "cancelled" ? "muted" : "bad", text }));
  }
  context.afterImport();
}

async function cancelImport(fileId, button) {
  button.disabled = true;
  try {
    const record = await api.postJson(`/sample-files/${fileId}/cancel`);
    if (!UNFINISHED.includes(record.status)) {
      finish(record);
    } else if (followed.has(fileId)) {
      drawProgress(followed.get(fileId), record);  // it stops at its next progress point
    }
  } catch (error) {
    // 409: it finished first; its outcome comes with the next read of its record.
    if (error.status !== 401 && error.status !== 409) {
      placeError(button, error.message);
      button.disabled = false;
    }
  }
}

/**
 * The study's unfinished imports, followed (again); called when its overview or files tab is drawn.
 * `app` gives `isCurrent()`, `downloadErrors(fileId)` and `afterImport()` (the figures and files).
 */
export async function watchImports(study, app) {
  if (context === null || context.study.id !== study.id) {
    stopImports();
  }
  context = { study, ...app };
  try {
    const files = await api.getJson(`/studies/${study.id}/sample-files?page_size=${RESUME_PAGE_SIZE}`);
    if (context.study === study && app.isCurrent()) {
      files.items.filter((item) => UNFINISHED.includes(item.status)).forEach((item) => followImport(item));
    }
  } catch {
    // The tab's own requests say what went wrong; the imports are looked up again next time.
  }
}

/** No import followed any more (another study, sign-out); their rows leave the page. */
export function stopImports() {
  for (const fileId of [...followed.keys()]) {
    forget(fileId);
  }
  context = null;
}
