// Talking to the Studybase API: tokens, fetch with refresh, uploads, downloads and readable errors.
// The access token lives only in this module's memory; the refresh token in sessionStorage (so a
// reload of this tab stays signed in, a new tab or a closed browser does not).

const API = "/api/v1";
const REFRESH_KEY = "studybase.refresh_token";
// Refresh this long before the access token expires, so no request carries an expired one.
const REFRESH_MARGIN_SECONDS = 60;

let accessToken = null;
let refreshTimer = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(message, status, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

/** Called with a message whenever the session is gone (401): the page goes back to sign-in. */
export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export function hasSession() {
  return accessToken !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

/** problem+json as one sentence a person can read: the detail, then each field error. */
export function problemMessage(problem, status) {
  if (!problem || typeof problem !== "object") {
    return `The server answered ${status} without an explanation.`;
  }
  const parts = [problem.detail || problem.title || `The server answered ${status}.`];
  for (const error of Array.isArray(problem.errors) ? problem.errors.slice(0, 5) : []) {
    const where = Array.isArray(error.loc) ? error.loc.filter((part) => part !== "body").join(" › ") : "";
    parts.push(where ? `${where}: ${error.msg}` : error.msg);
  }
  return parts.join(" ");
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return null;
}

function keepTokens(pair) {
  accessToken = pair.access_token;
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  clearTimeout(refreshTimer);
  const delay = Math.max(pair.expires_in - REFRESH_MARGIN_SECONDS, 5) * 1000;
  refreshTimer = setTimeout(() => refreshTokens().catch(() => {}), delay);
}

function forgetTokens() {
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
  clearTimeout(refreshTimer);
}

function endSession(message) {
  forgetTokens();
  onSignedOut(message);
}

async function postForTokens(path, init) {
  let response;
  try {
    response = await fetch(`${API}${path}`, { method: "POST", ...init });
  } catch {
    throw new ApiError("The server cannot be reached; check your connection.", 0, null);
  }
  if (!response.ok) {
    const problem = await problemOf(response);
    throw new ApiError(problemMessage(problem, response.status), response.status, problem);
  }
  keepTokens(await response.json());
}

/** A JSON POST that needs no session (password reset, verification, registration, declining with a
 * mailed token); throws ApiError unless 2xx. */
async function postAnonymous(path, body) {
  let response;
  try {
    response = await fetch(`${API}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The server cannot be reached; check your connection.", 0, null);
  }
  if (!response.ok) {
    const problem = await problemOf(response);
    throw new ApiError(problemMessage(problem, response.status), response.status, problem);
  }
  return response.status === 204 ? null : response.json();
}

/** Resolves with the server's one answer, whether or not the address has an account. */
export function requestPasswordReset(email) {
  return postAnonymous("/auth/password-reset", { email });
}

export function confirmPasswordReset(token, newPassword) {
  return postAnonymous("/auth/password-reset/confirm", { token, new_password: newPassword });
}

/** Registers an account. Without `invitation_token` the answer is the same for a new address and a
 * taken one (`{detail}`: check your mail, then sign in); with it, the account (made for the invited
 * address, verified and joined). */
export function register(body) {
  return postAnonymous("/auth/register", body);
}

/** `password` only for a registration's link (the new account's); an account's link needs none. */
export function verifyEmail(token, password) {
  return postAnonymous("/auth/verify-email", password === undefined ? { token } : { token, password });
}

export function declineInvitation(token) {
  return postAnonymous("/invitations/decline", { token });
}

export async function signIn(email, password) {
  const form = new URLSearchParams({ username: email, password });
  await postForTokens("/auth/token", { body: form });
}

// One refresh at a time: refresh tokens are single-use, two parallel ones would end the session.
let refreshing = null;

export function refreshTokens() {
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (!token) {
    return Promise.reject(new ApiError("Please sign in.", 401, null));
  }
  refreshing ??= postForTokens("/auth/refresh", {
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: token }),
  })
    .catch((error) => {
      // 401: the refresh token is spent, revoked or expired. A network failure or a 429 leaves
      // the session alone: the next request tries again.
      if (error.status === 401 || error.status === 422) {
        endSession("Your session has ended. Please sign in again.");
      }
      throw error;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** A token to send now: the one in memory, or a fresh one from the refresh token (after a reload). */
async function currentToken() {
  if (accessToken === null) {
    await refreshTokens();
  }
  return accessToken;
}

export async function signOut() {
  // Ends the session on the server too, through request(): an access token that expired meanwhile
  // (a laptop that slept) is refreshed and the logout sent again, so the session does not live on.
  // The page is signed out whatever the answer.
  if (hasSession()) {
    await request("/auth/logout", { method: "POST" }).catch(() => {});
  }
  forgetTokens();
}

async function send(path, init) {
  const headers = { ...init.headers, Authorization: `Bearer ${await currentToken()}` };
  try {
    return await fetch(`${API}${path}`, { ...init, headers });
  } catch {
    throw new ApiError("The server cannot be reached; check your connection.", 0, null);
  }
}

/**
 * A request with the access token. A 401 is retried once after a refresh (the token may have
 * expired while the computer slept); a second 401 ends the session.
 */
export async function request(path, init = {}) {
  let response = await send(path, init);
  if (response.status === 401) {
    await refreshTokens();
    response = await send(path, init);
    if (response.status === 401) {
      endSession("Your session has ended. Please sign in again.");
    }
  }
  if (!response.ok && response.status !== 304) {
    const problem = await problemOf(response);
    throw new ApiError(problemMessage(problem, response.status), response.status, problem);
  }
  return response;
}

export async function getJson(path) {
  return (await request(path)).json();
}

/** A POST with the access token and an optional JSON body; resolves with the answer's JSON, or null. */
export async function postJson(path, body) {
  const init = { method: "POST" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await request(path, init);
  return response.status === 204 ? null : response.json();
}

/**
 * A write with the access token: `method` and an optional JSON body; with `version`, sent as
 * `If-Match` so that it applies only if nobody changed the resource meanwhile (else 412).
 * Resolves with the answer's JSON, or null for 204.
 */
export async function sendJson(method, path, body, { version = null } = {}) {
  const headers = {};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  if (version !== null) {
    headers["If-Match"] = `"${version}"`;
  }
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  const response = await request(path, init);
  return response.status === 204 ? null : response.json();
}

export function acceptInvitation(token) {
  return postJson("/invitations/accept", { token });
}

/**
 * GET with If-None-Match: `{ changed: false }` on 304 (keep what is shown), else the new body
 * and its ETag, to send next time.
 */
export async function getIfChanged(path, etag) {
  const response = await request(path, etag ? { headers: { "If-None-Match": etag } } : {});
  if (response.status === 304) {
    return { changed: false, etag };
  }
  return { changed: true, etag: response.headers.get("ETag"), body: await response.json() };
}

/** A `Location` the API answered (`/api/v1/sample-files/…`) as a path for getJson; null if elsewhere. */
export function apiPath(location) {
  return location && location.startsWith(`${API}/`) ? location.slice(API.length) : null;
}

function filenameFrom(response, fallback) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const encoded = disposition.match(/filename\*=UTF-8''([^;]+)/i);
  if (encoded) {
    return decodeURIComponent(encoded[1]);
  }
  const plain = disposition.match(/filename="?([^";]+)"?/i);
  return plain ? plain[1] : fallback;
}

/** Downloads that need the token: fetched here, then saved through a blob (a link carries no token). */
export async function download(path, fallbackName) {
  const response = await request(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filenameFrom(response, fallbackName);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function sendUpload(path, form, token, { onProgress, onSent, respondAsync = false }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}${path}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    if (respondAsync) {
      // RFC 7240: answered 202 once the file is stored, with `Location` of its record to follow.
      xhr.setRequestHeader("Prefer", "respond-async");
    }
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        onProgress(event.loaded / event.total);
      }
    });
    xhr.upload.addEventListener("load", onSent);
    xhr.addEventListener("load", () =>
      resolve({ status: xhr.status, body: xhr.response, location: xhr.getResponseHeader("Location") }),
    );
    xhr.addEventListener("error", () =>
      reject(new ApiError("The upload failed: the server cannot be reached.", 0, null)),
    );
    xhr.send(form);
  });
}

/**
 * A multipart upload through XMLHttpRequest, whose upload events (unlike fetch's) report progress.
 * Resolves with `{ status, body, location }` for answers that carry a report (201, 200, 422 with
 * `report`) or a record whose import goes on (202, with `respondAsync`; see apiPath for `location`).
 */
export async function upload(path, form, callbacks) {
  let answer = await sendUpload(path, form, await currentToken(), callbacks);
  if (answer.status === 401) {
    await refreshTokens();
    answer = await sendUpload(path, form, accessToken, callbacks);
    if (answer.status === 401) {
      endSession("Your session has ended. Please sign in again.");
    }
  }
  if (answer.status >= 400 && !(answer.body && answer.body.report)) {
    throw new ApiError(problemMessage(answer.body, answer.status), answer.status, answer.body);
  }
  return answer;
}
