// The page: sign-in (and password reset), invitations and address verification from their mailed
// links, and the workspace: the overview, a new study, one study's tabs (router.js gives each view
// its URL; workspace.js draws a study's tabs); the figures poll every 30 s.

import * as api from "./api.js";
import { byId, showMessage } from "./dom.js";
import { INVITATIONS_PATH, VERIFY_PATH, loadMyInvitations, startInvitationFromLink, startVerifyFromLink, wireInvitationViews } from "./invitations.js";
import { reloadFiles, wireFiles } from "./files.js";
import { followImport } from "./imports.js";
import { wireNewSample } from "./newsample.js";
import { showNewStudy, wireNewStudy } from "./newstudy.js";
import { RESET_PATH, startFromLink, wireResetForms } from "./reset.js";
import { wireRegistration } from "./register.js";
import { currentRoute, go, parseRoute, startRouter, studyPath } from "./router.js";
import { wireSample } from "./sample.js";
import { wireSamples } from "./samples.js";
import { wireSettings } from "./settings.js";
import { wireStudyInvitations } from "./studyinvitations.js";
import { clearViews, renderFiguresAsOf, renderReport, renderStudies, renderStudyFigures, renderSummary } from "./views.js";
import { clearWorkspace, drawStudyHeading, showStudyTab, studyViewName } from "./workspace.js";

const POLL_MILLISECONDS = 30000;
const SEARCH_DELAY_MILLISECONDS = 250;

// Who may create studies (the account's global role, from /auth/me).
const STUDY_CREATORS = ["researcher", "admin"];

const state = {
  summaryEtag: null,
  studyEtag: null,
  openStudy: null,
  pollTimer: null,
  // Counts sign-outs: an answer that arrives after one belongs to the ended session and is dropped.
  session: 0,
};

function show(view) {
  for (const id of ["sign-in", "forgot", "register", "reset", "invitation", "verify", "overview", "study", "new-study"]) {
    byId(id).hidden = id !== view;
  }
  byId("session").hidden = !["overview", "study", "new-study"].includes(view);
}

function reportError(messageBox, error) {
  // A 401 has already sent the page to sign-in with its own message.
  if (error.status !== 401) {
    showMessage(messageBox, error.message);
  }
}

async function loadStudies() {
  const params = new URLSearchParams({ page_size: "100", sort: "code" });
  const search = byId("study-search").value.trim();
  const status = byId("study-status").value;
  if (search) {
    params.set("q", search);
  }
  if (status) {
    params.set("status", status);
  }
  const session = state.session;
  const page = await api.getJson(`/studies?${params}`);
  if (session === state.session) {
    renderStudies(page, openStudy);
  }
}

/**
 * The summary, conditionally: 304 keeps the figures shown. The studies table follows the summary:
 * every change to a study or its samples is an activity entry, so an unchanged summary means an
 * unchanged table and the list is not asked for again.
 */
async function refreshOverview({ force = false } = {}) {
  const session = state.session;
  try {
    const answer = await api.getIfChanged("/dashboard/summary", force ? null : state.summaryEtag);
    if (answer.changed && session === state.session) {
      renderSummary(answer.body);
      await loadStudies();
      // Kept only once the table is current too: a failed list is asked for again at the next tick.
      if (session === state.session) {
        state.summaryEtag = answer.etag;
      }
    } else if (session === state.session) {
      renderFiguresAsOf(new Date().toISOString());  // a 304: the figures shown are current now
    }
    showMessage("overview-message", "");
  } catch (error) {
    reportError("overview-message", error);
  }
}

/** The dialect chosen for errors.csv, as a query; none keeps the server's default (as uploaded). */
function errorsQuery() {
  const dialect = byId("errors-dialect").value;
  return dialect ? `?${new URLSearchParams({ dialect })}` : "";
}

const uploadActions = {
  downloadOriginal: (item) => saveFile(`/sample-files/${item.id}/content`, item.filename),
  downloadErrors: (fileId) => saveFile(`/sample-files/${fileId}/errors.csv${errorsQuery()}`, "errors.csv"),
};

/** The CSV dialect the browser's language writes numbers in: a decimal comma means Excel's `;` files. */
function localDialect() {
  const decimal = new Intl.NumberFormat(navigator.language).formatToParts(1.5).find((part) => part.type === "decimal");
  return decimal && decimal.value === "," ? "excel-eu" : "excel";
}

async function refreshStudy({ force = false } = {}) {
  const study = state.openStudy;
  try {
    const answer = await api.getIfChanged(`/dashboard/studies/${study.id}`, force ? null : state.studyEtag);
    if (answer.changed && state.openStudy === study) {
      state.studyEtag = answer.etag;
      renderStudyFigures(study, answer.body, uploadActions);
    }
    showMessage("study-message", "");
  } catch (error) {
    if (error.status === 404 && state.openStudy === study) {
      // No longer a member (removed, or the study is gone): its figures leave the screen.
      await leaveStudy(error);
      return;
    }
    reportError("study-message", error);
  }
}

/** Back to the overview (the study's URL rewritten: it leads nowhere now), saying why. */
async function leaveStudy(error) {
  state.openStudy = null;
  await go("/", { replace: true });
  showMessage("overview-message", error.message);
}

/** The study as it is now (its role, status, version and fields); null when it cannot be read. */
async function readStudy(studyId) {
  const session = state.session;
  try {
    const study = await api.getJson(`/studies/${encodeURIComponent(studyId)}`);
    return session === state.session ? study : null;
  } catch (error) {
    if (session !== state.session || error.status === 401) {
      return null;
    }
    if (error.status === 404 || error.status === 422) {
      await leaveStudy(error);
    } else {
      showMessage("study-message", error.message);
    }
    return null;
  }
}

function enterStudy(study) {
  state.openStudy = study;
  state.studyEtag = null;
  byId("upload-result").replaceChildren();
  byId("upload-form").reset();
  showMessage("study-message", "");
  drawStudyHeading(study);
}

/** A study's route: the study is read when it is not the one open, then the route's tab drawn. */
async function showStudyRoute(route) {
  const isCurrent = () => state.openStudy !== null && currentRoute().studyId === state.openStudy.id;
  if (!state.openStudy || state.openStudy.id !== route.studyId) {
    state.openStudy = null;
    const study = await readStudy(route.studyId);
    if (!study || currentRoute().studyId !== study.id) {
      return;
    }
    enterStudy(study);
  }
  show("study");
  const keep = (study) => {
    state.openStudy = study;
    drawStudyHeading(study);
  };
  await showStudyTab(state.openStudy, route, {
    isCurrent,
    refreshFigures: () => refreshStudy({ force: state.studyEtag === null }),
    uploadActions,
    afterImport,
    readStudy: async () => {
      const study = await readStudy(route.studyId);
      if (study && isCurrent()) {
        keep(study);
      }
      return study;
    },
    onStudy: keep,
    onDeleted: (study) => {
      state.openStudy = null;
      state.summaryEtag = null;
      // Replaced, not pushed: Back must not lead to the study that is gone.
      go("/", { replace: true }).then(() => showNotice(`The draft ${study.code} was deleted.`));
    },
  });
}

/** Draws the view of `route` (router.js): the URL is the one truth of where the user is. */
function renderRoute(route) {
  if (!api.hasSession()) {
    toSignIn("");
    return undefined;
  }
  if (route.view === "study") {
    return showStudyRoute(route);
  }
  state.openStudy = null;
  if (route.view === "new-study") {
    show("new-study");
    showNewStudy();
    return undefined;
  }
  show("overview");
  return refreshOverview();
}

/** What the view of `route` is called: the tab's title, and what a navigation announces. */
function viewName(route) {
  if (route.view === "new-study") {
    return "New study";
  }
  if (route.view === "study" && state.openStudy) {
    return `${studyViewName(route)} — ${state.openStudy.code}`;
  }
  return "Overview";
}

/**
 * After an in-page navigation (a link, Back, Forward): the focus goes to the new view's heading, so
 * keyboard and screen-reader users go on from the top of what they asked for instead of from a link
 * that is gone, and the view's name is announced and becomes the tab's title. Not when the user
 * moved the focus while the view loaded (typing into it already).
 */
function arrived(route, { focusUntouched }) {
  if (byId("session").hidden) {
    return;  // sign-in took over, and focused its first field
  }
  const name = viewName(route);
  document.title = `${name} — Studybase`;
  byId("view-announcer").textContent = name;
  if (focusUntouched) {
    document.querySelector("main > section:not([hidden]) > h2[tabindex]")?.focus();
  }
}

function refreshVisibleView(options) {
  return state.openStudy ? refreshStudy(options) : refreshOverview(options);
}

function openStudy(study) {
  return go(studyPath(study.id));
}

async function saveFile(path, fallbackName) {
  try {
    await api.download(path, fallbackName);
  } catch (error) {
    reportError(state.openStudy ? "study-message" : "overview-message", error);
  }
}

function startPolling() {
  clearInterval(state.pollTimer);
  // Hidden tabs ask for nothing; coming back to the tab refreshes at once (below).
  state.pollTimer = setInterval(() => {
    if (document.visibilityState === "visible") {
      refreshVisibleView();
    }
  }, POLL_MILLISECONDS);
}

function showNotice(text) {
  byId("overview-notice").textContent = text;
  byId("overview-notice").hidden = !text;
}

/** After an invitation was answered from the overview's list: the studies table changes. */
function afterInvitationAnswer(notice) {
  showNotice(notice);
  return refreshOverview({ force: true });
}

async function enterDashboard(notice = "") {
  state.summaryEtag = null;
  state.openStudy = null;
  showNotice(notice);
  if (!parseRoute(window.location.pathname)) {
    history.replaceState(null, "", "/");  // a mailed link's page, done with
  }
  startPolling();
  const route = currentRoute();
  await renderRoute(route);
  document.title = `${viewName(route)} — Studybase`;  // the focus stays where a page load puts it
  await loadMyInvitations(afterInvitationAnswer);
  const session = state.session;
  try {
    const me = await api.getJson("/auth/me");
    if (session === state.session) {
      byId("new-study-link").hidden = !STUDY_CREATORS.includes(me.role);
      byId("signed-in-as").textContent = me.email;
    }
  } catch (error) {
    reportError("overview-message", error);
  }
}

function toSignIn(message) {
  state.session += 1;
  clearInterval(state.pollTimer);
  state.openStudy = null;
  state.summaryEtag = null;
  clearViews();
  clearWorkspace();
  document.title = "Studybase";
  byId("view-announcer").textContent = "";
  showNotice("");
  byId("my-invitations").hidden = true;
  byId("new-study-link").hidden = true;
  byId("my-invitations-list").replaceChildren();
  show("sign-in");
  showMessage("sign-in-message", message);
  byId("password").value = "";
  byId("email").focus();
}

async function submitSignIn(event) {
  event.preventDefault();
  const button = event.submitter;
  button.disabled = true;
  try {
    await api.signIn(byId("email").value.trim(), byId("password").value);
    byId("password").value = "";
    showMessage("sign-in-message", "");
    await enterDashboard();
  } catch (error) {
    showMessage("sign-in-message", error.message);
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  await api.signOut();
  history.replaceState(null, "", "/");  // the next user starts at the overview, not at this one's study
  toSignIn("You are signed out.");
}

function uploadProgress(fraction) {
  byId("upload-progress").value = fraction;
  byId("upload-phase").textContent = `Sending… ${Math.round(fraction * 100)} %`;
}

function uploadSent() {
  byId("upload-progress").removeAttribute("value");  // indeterminate: the server is at work
  byId("upload-phase").textContent = "The server is importing the file…";
}

async function submitUpload(event) {
  event.preventDefault();
  const study = state.openStudy;
  const form = new FormData();
  form.append("file", byId("upload-file").files[0]);
  form.append("mode", byId("upload-mode").value);
  form.append("dry_run", byId("upload-dry-run").checked ? "true" : "false");
  // "Automatic" sends nothing: the server decides from the file.
  for (const id of ["upload-date-order", "upload-decimal-mark"]) {
    const choice = byId(id);
    if (choice.value) {
      form.append(choice.name, choice.value);
    }
  }
  byId("upload-submit").disabled = true;
  byId("upload-result").replaceChildren();
  byId("upload-progress").value = 0;
  byId("upload-state").hidden = false;
  try {
    const answer = await api.upload(`/studies/${study.id}/sample-files`, form, {
      onProgress: uploadProgress,
      onSent: uploadSent,
      // A dry run's report is its answer; an import goes on as a job, followed beside the form.
      respondAsync: !byId("upload-dry-run").checked,
    });
    if (answer.status === 202) {
      followImport(answer.body, api.apiPath(answer.location) ?? undefined);
      if (currentRoute().tab === "files") {
        await reloadFiles();  // the new file, queued or importing
      }
      return;
    }
    renderReport(answer, uploadActions.downloadErrors);
    await afterImport();
  } catch (error) {
    reportError("study-message", error);
  } finally {
    byId("upload-state").hidden = true;
    byId("upload-submit").disabled = false;
  }
}

/** An import ended: the figures at once, not at the next tick (they just changed), and the files. */
async function afterImport() {
  await refreshStudy();
  if (currentRoute().tab === "files") {
    await reloadFiles();
  }
  state.summaryEtag = null;
}

function studyDownload(path, fallbackName, params) {
  return () => {
    const query = new URLSearchParams(params());
    saveFile(`/studies/${state.openStudy.id}${path}?${query}`, `${state.openStudy.code}-${fallbackName}`);
  };
}

const csvParams = () => ({ format: "csv", dialect: byId("csv-dialect").value });

function wireEvents() {
  byId("sign-in-form").addEventListener("submit", submitSignIn);
  byId("sign-out").addEventListener("click", signOut);
  byId("refresh-now").addEventListener("click", () => {
    // The figures poll by themselves; a study's other tabs are drawn again only when asked.
    const route = currentRoute();
    return route.view === "study" && !["home", "files"].includes(route.tab) ? renderRoute(route) : refreshVisibleView();
  });
  byId("back-to-overview").addEventListener("click", () => go("/"));
  byId("upload-form").addEventListener("submit", submitUpload);
  byId("template-csv").addEventListener("click", studyDownload("/sample-template", "template.csv", csvParams));
  byId("template-xlsx").addEventListener("click", studyDownload("/sample-template", "template.xlsx", () => ({ format: "xlsx" })));
  byId("export-csv").addEventListener("click", studyDownload("/samples/export", "samples.csv", csvParams));
  let searchTimer = null;
  const filterStudies = () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadStudies().catch((error) => reportError("overview-message", error)), SEARCH_DELAY_MILLISECONDS);
  };
  byId("study-search").addEventListener("input", filterStudies);
  byId("study-status").addEventListener("change", filterStudies);
  byId("study-filter").addEventListener("submit", (event) => event.preventDefault());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !byId("session").hidden) {
      refreshVisibleView();
    }
  });
}

api.whenSignedOut(toSignIn);
wireEvents();
wireSettings();
wireSamples();
wireSample();
wireNewSample();
wireFiles();
wireStudyInvitations();
wireNewStudy((study) => {
  state.summaryEtag = null;
  go(studyPath(study.id, "settings"), { replace: true });  // Back skips the filled-in form
});
startRouter(renderRoute, arrived);
wireResetForms({ show, toSignIn });
wireRegistration({ show });
wireInvitationViews({ enter: enterDashboard, toSignIn });
byId("csv-dialect").value = localDialect();
if (window.location.pathname === RESET_PATH) {
  startFromLink(show);
} else if (window.location.pathname === INVITATIONS_PATH) {
  startInvitationFromLink(show);
} else if (window.location.pathname === VERIFY_PATH) {
  startVerifyFromLink(show);
} else if (api.hasSession()) {
  enterDashboard();
} else {
  toSignIn("");
}
