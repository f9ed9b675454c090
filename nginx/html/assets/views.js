// Rendering of the API's answers into the page. No fetching here: app.js passes the data in.

import { activityItem, nothingYet } from "./activity.js";
import { drawBarChart } from "./chart.js";
import { byId, el, formatBytes, formatWhen, humanize, numberCell, row, shortDay, showMessage } from "./dom.js";

function breakdown(byStatus) {
  return el(
    "ul",
    { className: "breakdown" },
    Object.entries(byStatus).map(([status, count]) =>
      el("li", { attributes: { "data-status": status } }, [
        el("span", { text: humanize(status) }),
        el("span", { className: "count", text: count.toLocaleString("en") }),
      ]),
    ),
  );
}

function card(figure, title, value, details = []) {
  return el("article", { className: "card", attributes: { "data-figure": figure } }, [
    el("h3", { text: title }),
    el("p", { className: "figure", text: value }),
    ...details,
  ]);
}

function summaryCards(summary) {
  const files = summary.sample_files;
  const cards = [
    card("studies", "Studies", summary.studies.total.toLocaleString("en"), [breakdown(summary.studies.by_status)]),
    card("samples", "Samples", summary.samples.total.toLocaleString("en"), [breakdown(summary.samples.by_status)]),
    card("sample-files", "Sample files", files.total.toLocaleString("en"), [
      breakdown({ imported: files.imported, rejected: files.rejected }),
      el("p", { className: "muted", text: `${formatBytes(files.total_bytes)} stored` }),
    ]),
  ];
  if (summary.users) {
    cards.push(
      card("users", "Users", summary.users.total.toLocaleString("en"), [
        breakdown({ active: summary.users.active, ...summary.users.by_role }),
      ]),
    );
  }
  return cards;
}

/** When the figures shown were last known current: the answer's time, or a 304's (nothing changed). */
export function renderFiguresAsOf(iso) {
  const generated = byId("generated-at");
  generated.dateTime = iso;
  generated.textContent = formatWhen(iso);
}

export function renderSummary(summary) {
  byId("cards").replaceChildren(...summaryCards(summary));
  renderFiguresAsOf(summary.generated_at);
  const days = summary.samples_created.map((day) => ({ label: shortDay(day.date), count: day.count }));
  drawBarChart(byId("daily-chart"), days, {
    xTitle: "Day (UTC)",
    yTitle: "Samples",
    description: `Samples created per day over the last ${days.length} days`,
  });
  const activity = summary.recent_activity.map((entry) => activityItem(entry, { withStudy: true }));
  byId("activity").replaceChildren(...(activity.length ? activity : [nothingYet()]));
}

/** One page of the study list; when there are more, says so (the search and filter narrow it). */
export function renderStudies({ items: studies, total, total_is_exact: exact }, openStudy) {
  const rows = studies.map((study) => {
    const open = el("button", { className: "link", text: study.code, attributes: { type: "button" } });
    open.addEventListener("click", () => openStudy(study));
    return el("tr", { attributes: { "data-study-id": study.id } }, [
      el("td", {}, [open]),
      el("td", { text: study.title }),
      el("td", { text: humanize(study.status) }),
      numberCell(study.sample_count),
      el("td", { text: humanize(study.my_role) }),
    ]);
  });
  byId("studies-table").tBodies[0].replaceChildren(...rows);
  byId("studies-empty").hidden = rows.length > 0;
  const more = byId("studies-more");
  more.hidden = total <= rows.length;
  more.textContent = more.hidden
    ? ""
    : `Showing the first ${rows.length} of ${exact ? "" : "at least "}${total.toLocaleString("en")} studies; search or filter to find the others.`;
}

function choiceTables(choices) {
  if (!choices.length) {
    return [el("p", { className: "muted", text: "This study has no choice fields." })];
  }
  return choices.map((choice) =>
    el("div", { className: "table-wrap" }, [
      el("table", {}, [
        el("caption", { text: choice.field }),
        el("tbody", {}, Object.entries(choice.counts).map(([value, count]) => el("tr", {}, [el("td", { text: value }), numberCell(count)]))),
      ]),
    ]),
  );
}

function completenessRows(completeness) {
  return completeness.map((field) => {
    const percent = `${Math.round(field.share * 100)} %`;
    const meter = el("meter", { attributes: { min: 0, max: 1, value: field.share, "aria-label": `${field.field} filled` } });
    return el("tr", {}, [el("td", { text: field.field }), numberCell(field.filled), el("td", {}, [meter, ` ${percent}`])]);
  });
}

export function renderStudyFigures(study, figures, uploadActions) {
  byId("study-title").textContent = `${study.code} — ${study.title}`;
  byId("study-cards").replaceChildren(
    card("study-samples", "Samples", figures.samples.total.toLocaleString("en"), [breakdown(figures.samples.by_status)]),
    card("study-uploads", "Uploads", (figures.uploads.imported + figures.uploads.rejected).toLocaleString("en"), [
      breakdown({ imported: figures.uploads.imported, rejected: figures.uploads.rejected }),
    ]),
  );
  const weeks = figures.samples_created.map((week) => ({ label: shortDay(week.week_start), count: week.count }));
  drawBarChart(byId("weekly-chart"), weeks, {
    xTitle: "Week starting (UTC)",
    yTitle: "Samples",
    description: `Samples created per week over the last ${weeks.length} weeks`,
  });
  byId("choices").replaceChildren(...choiceTables(figures.choices));
  byId("completeness-table").tBodies[0].replaceChildren(...completenessRows(figures.completeness));
  byId("uploads-table").tBodies[0].replaceChildren(...figures.uploads.recent.map((item) => uploadRow(item, uploadActions)));
}

export function actionButton(text, action) {
  const button = el("button", { className: "link", text, attributes: { type: "button" } });
  button.addEventListener("click", action);
  return button;
}

function uploadRow(item, { downloadOriginal, downloadErrors }) {
  const downloads = el("td", { className: "actions" }, [actionButton("File", () => downloadOriginal(item))]);
  if (item.status === "rejected") {
    downloads.append(actionButton("errors.csv", () => downloadErrors(item.id, item.filename)));
  }
  return el("tr", { attributes: { "data-file-id": item.id } }, [
    el("td", { text: item.filename }),
    el("td", { text: humanize(item.status) }),
    el("td", { text: item.mode }),
    el("td", { text: formatWhen(item.created_at) }),
    numberCell(item.rows),
    numberCell(item.created),
    numberCell(item.updated),
    numberCell(item.rejected),
    downloads,
  ]);
}

function reportHeadline(status, body) {
  const report = body.report;
  // Errors of whole columns (missing, unknown, ambiguous dates) are counted apart from the rows':
  // "1 error of the columns; 0 of 1 rows have errors", never "0 of 1 rows have errors (7 in all)".
  const columnErrors = report.column_errors ?? 0;
  const rowErrors = report.errors_total - columnErrors;
  const counts = [];
  if (columnErrors) {
    counts.push(columnErrors === 1 ? "1 error of the columns" : `${columnErrors} errors of the columns`);
  }
  if (report.rejected || !columnErrors) {
    counts.push(`${report.rejected} of ${report.rows} rows have errors` + (rowErrors > report.rejected ? ` (${rowErrors} in all)` : ""));
  }
  const errors = counts.join("; ");
  if (body.dry_run) {
    return `Dry run of ${body.filename}: ${report.rows} rows read; it would create ${report.created}, update ${report.updated}, leave ${report.unchanged} unchanged; ${errors}. Nothing was imported.`;
  }
  if (status === 422) {
    return `Nothing was imported: ${errors}.`;
  }
  if (body.duplicate_of) {
    return `This file was imported already (${body.filename}) and nothing changed since; nothing was imported again.`;
  }
  return `Imported ${body.filename}: ${report.created} created, ${report.updated} updated, ${report.unchanged} unchanged of ${report.rows} rows.`;
}

function errorTable(errors) {
  return el("div", { className: "table-wrap" }, [
    el("table", { attributes: { id: "report-errors" } }, [
      el("caption", { text: "Errors in the file" }),
      el("thead", {}, [
        el("tr", {}, ["Row", "Column", "Value", "Message"].map((name) => el("th", { text: name, attributes: { scope: "col" } }))),
      ]),
      el(
        "tbody",
        {},
        errors.map((error) => row([String(error.row), error.column ?? "", error.value === null ? "" : String(error.value), error.message])),
      ),
    ]),
  ]);
}

/** The import report: a headline, then each error as row/column/value/message, and errors.csv. */
export function renderReport({ status, body }, downloadErrors) {
  const report = body.report;
  const parts = [el("p", { className: status === 422 ? "bad" : "good", text: reportHeadline(status, body) })];
  if (report.errors.length) {
    parts.push(errorTable(report.errors));
    if (report.errors_truncated) {
      parts.push(el("p", { className: "muted", text: `Showing the first ${report.errors.length} of ${report.errors_total} errors.` }));
    }
  }
  const fileId = body.sample_file_id;
  if (fileId) {
    parts.push(actionButton("Download every error (errors.csv)", () => downloadErrors(fileId, body.filename || "upload")));
  }
  byId("upload-result").replaceChildren(...parts);
}

/** Nothing of the last user stays in the page after sign-out, not even hidden. */
export function clearViews() {
  for (const id of ["cards", "daily-chart", "activity", "study-cards", "weekly-chart", "choices", "upload-result"]) {
    byId(id).replaceChildren();
  }
  for (const id of ["studies-table", "completeness-table", "uploads-table"]) {
    byId(id).tBodies[0].replaceChildren();
  }
  for (const id of ["signed-in-as", "study-title", "generated-at", "studies-more"]) {
    byId(id).textContent = "";
  }
  showMessage("overview-message", "");
  showMessage("study-message", "");
  byId("generated-at").removeAttribute("datetime");
  byId("study-filter").reset();
  byId("upload-form").reset();  // the file the last user chose
}
