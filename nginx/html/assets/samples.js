// A study's samples view: one page of the table at a time, asked of the server with the API's own
// query parameters (q, status, field.<name>, sort, page, page_size). The page's own URL carries the
// same query, so a filtered, sorted page can be linked and survives a reload.

import * as api from "./api.js";
import { byId, drawPager, el, humanize, showMessage } from "./dom.js";
import { fieldLabel } from "./fields.js";
import { keepQuery, studyPath } from "./router.js";
import { addStatusOptions, formatValue } from "./values.js";

const FIELD_PREFIX = "field.";
const DEFAULT_SORT = "sample_id";
const DEFAULT_PAGE_SIZE = "50";
const SEARCH_DELAY_MILLISECONDS = 250;
const SORTABLE = { sample_id: "Sample id", status: "Status", updated_at: "Updated" };

let current = null;  // { study, isCurrent, last }
let searchTimer = null;

const query = () => new URLSearchParams(window.location.search);

function sortHeader(key, label, sort) {
  const th = el("th", { attributes: { scope: "col" } });
  const ascending = sort === key;
  const descending = sort === `-${key}`;
  if (ascending || descending) {
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  const button = el("button", { className: "link", text: `${label}${ascending ? " ↑" : descending ? " ↓" : ""}`, attributes: { type: "button", "data-sort": key } });
  button.addEventListener("click", () => update({ sort: ascending ? `-${key}` : key }));
  th.append(button);
  return th;
}

function drawHead(study, sort) {
  const fields = study.sample_fields.map((field) =>
    el("th", { text: fieldLabel(field), attributes: { scope: "col" } }),
  );
  byId("samples-table").tHead.rows[0].replaceChildren(
    sortHeader("sample_id", SORTABLE.sample_id, sort),
    sortHeader("status", SORTABLE.status, sort),
    ...fields,
    sortHeader("updated_at", SORTABLE.updated_at, sort),
  );
}

function sampleRow(study, sample) {
  const link = el("a", { text: sample.sample_id, attributes: { href: studyPath(study.id, "samples", sample.id), "data-route": "" } });
  return el("tr", { attributes: { "data-sample": sample.id } }, [
    el("td", {}, [link]),
    el("td", { text: humanize(sample.status) }),
    ...study.sample_fields.map((field) => el("td", { text: formatValue(sample.values[field.name]) })),
    el("td", { text: new Date(sample.updated_at).toLocaleDateString("en-GB") }),
  ]);
}

function drawFilterChips(params) {
  const chips = [];
  for (const [name, value] of params) {
    if (name.startsWith(FIELD_PREFIX)) {
      const field = name.slice(FIELD_PREFIX.length);
      const remove = el("button", { className: "link", text: "remove", attributes: { type: "button", "aria-label": `Remove the filter on ${field}` } });
      remove.addEventListener("click", () => update({ [name]: null }));
      chips.push(el("li", {}, [`${field} = ${value} `, remove]));
    }
  }
  byId("samples-filters").replaceChildren(...chips);
}

async function fetchPage() {
  const { study, isCurrent } = current;
  const params = query();
  if (!params.has("page_size")) {
    params.set("page_size", DEFAULT_PAGE_SIZE);
  }
  drawHead(study, params.get("sort") || DEFAULT_SORT);
  drawFilterChips(params);
  try {
    const page = await api.getJson(`/studies/${study.id}/samples?${params}`);
    if (!isCurrent() || current.study !== study) {
      return;
    }
    current.last = page;
    showMessage("samples-message", "");
    byId("samples-table").tBodies[0].replaceChildren(...page.items.map((sample) => sampleRow(study, sample)));
    byId("samples-empty").hidden = page.items.length > 0;
    drawPager(page, "samples");
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("samples-message", error.message);
    }
  }
}

/** Changes the query (null removes a name); any change but the page's own goes back to page 1. */
function update(changes) {
  const params = query();
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === "") {
      params.delete(name);
    } else {
      params.set(name, value);
    }
  }
  if (!("page" in changes)) {
    params.delete("page");
  }
  keepQuery(params);
  return fetchPage();
}

/** Draws the samples of `study` for the current URL's query. */
export function loadSamples(study, isCurrent) {
  current = { study, isCurrent, last: null };
  const params = query();
  byId("samples-search").value = params.get("q") || "";
  byId("samples-status").value = params.get("status") || "";
  byId("samples-page-size").value = params.get("page_size") || DEFAULT_PAGE_SIZE;
  const fields = study.sample_fields.map((field) => el("option", { text: field.name, attributes: { value: field.name } }));
  byId("samples-filter-field").replaceChildren(...fields);
  byId("samples-field-filter").hidden = fields.length === 0;
  return fetchPage();
}

function turnPage(step) {
  const page = current.last ? current.last.page + step : 1;
  update({ page: page > 1 ? String(page) : null });
}

export function wireSamples() {
  addStatusOptions(byId("samples-status"));
  byId("samples-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => update({ q: byId("samples-search").value.trim() }), SEARCH_DELAY_MILLISECONDS);
  });
  byId("samples-status").addEventListener("change", () => update({ status: byId("samples-status").value }));
  byId("samples-page-size").addEventListener("change", () => update({ page_size: byId("samples-page-size").value }));
  byId("samples-filter").addEventListener("submit", (event) => event.preventDefault());
  byId("samples-field-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    update({ [`${FIELD_PREFIX}${byId("samples-filter-field").value}`]: byId("samples-filter-value").value.trim() });
    byId("samples-filter-value").value = "";
  });
  byId("samples-previous").addEventListener("click", () => turnPage(-1));
  byId("samples-next").addEventListener("click", () => turnPage(1));
}
