// The workspace's URLs (History API): each view has a path of its own, so it can be linked, reloaded
// and reached with Back and Forward. The same paths are served index.html by nginx/default.conf and
// src/page.py (WORKSPACE_PATH); the mailed links' paths (/reset-password...) are not routes here.

const STUDY_TABS = ["samples", "files", "members", "settings"];
export const NEW_STUDY_PATH = "/studies/new";

let render = () => {};
let arrive = () => {};
// Counts in-page navigations: only the latest one, once drawn, moves the focus.
let navigations = 0;

/** The view a path names: `{ view, studyId?, tab?, sampleId? }`, or null for a path of no view. */
export function parseRoute(pathname) {
  if (pathname === "/") {
    return { view: "overview" };
  }
  if (pathname === NEW_STUDY_PATH) {
    return { view: "new-study" };
  }
  let parts;
  try {
    parts = pathname.split("/").slice(1).map(decodeURIComponent);
  } catch {
    return null;  // a malformed %-escape (/studies/%E0) names no view
  }
  if (parts[0] !== "studies" || !parts[1] || parts.length > 4) {
    return null;
  }
  const [, studyId, tab = "home", sampleId] = parts;
  if (tab !== "home" && !STUDY_TABS.includes(tab)) {
    return null;
  }
  if (sampleId !== undefined && (tab !== "samples" || !sampleId)) {
    return null;
  }
  return sampleId ? { view: "study", studyId, tab: "sample", sampleId } : { view: "study", studyId, tab };
}

export function studyPath(studyId, tab = "home", sampleId = null) {
  const base = `/studies/${encodeURIComponent(studyId)}`;
  if (sampleId) {
    return `${base}/samples/${encodeURIComponent(sampleId)}`;
  }
  return tab === "home" ? base : `${base}/${tab}`;
}

export function currentRoute() {
  return parseRoute(window.location.pathname) || { view: "overview" };
}

/** Goes to `path` (with its query): a new history entry, or (replace) the current one rewritten. */
export function go(path, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", path);
  } else if (path !== window.location.pathname + window.location.search) {
    history.pushState(null, "", path);
  }
  return navigate();
}

/**
 * Draws the current route, then (unless another navigation began meanwhile) `arrive`s there, saying
 * whether the focus is still where it was (or nowhere): if not, the user went on while the view
 * loaded, and it is theirs.
 */
async function navigate() {
  navigations += 1;
  const navigation = navigations;
  const route = currentRoute();
  const focused = document.activeElement;
  await render(route);
  if (navigation === navigations) {
    arrive(route, { focusUntouched: [focused, document.body, null].includes(document.activeElement) });
  }
}

/** Rewrites the current entry's query (a table's filters), without rendering again. */
export function keepQuery(params) {
  const query = params.toString();
  history.replaceState(null, "", window.location.pathname + (query ? `?${query}` : ""));
}

function followLink(event) {
  const link = event.target.closest("a[data-route]");
  // A modified click (new tab, new window) is the browser's own.
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  event.preventDefault();
  go(link.getAttribute("href"));
}

/**
 * `onRoute(route)` draws a route; called on Back/Forward and on every in-page link.
 * `onArrived(route, { focusUntouched })` follows each of those once the route is drawn (the first
 * load is not one: the page starts at its top).
 */
export function startRouter(onRoute, onArrived) {
  render = onRoute;
  arrive = onArrived;
  window.addEventListener("popstate", navigate);
  document.addEventListener("click", followLink);
}
