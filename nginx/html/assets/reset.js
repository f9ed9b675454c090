// Password reset: "Forgot password?" asks for a mailed link; the link opens /reset-password with its
// token in the fragment (#token=...), which no server ever sees. The page reads the token once and
// takes it out of the address bar and the history at once.

import * as api from "./api.js";
import { byId, showMessage } from "./dom.js";

export const RESET_PATH = "/reset-password";

let resetToken = null;

/** The token of a mailed link, or null; the fragment is cleared either way. */
function takeTokenFromAddress() {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  history.replaceState(null, "", RESET_PATH);
  return token;
}

export function showForgotForm(show) {
  byId("forgot-done").hidden = true;
  byId("forgot-form").hidden = false;
  showMessage("forgot-message", "");
  byId("forgot-email").value = byId("email").value.trim();
  show("forgot");
  byId("forgot-email").focus();
}

/** Opened from a mailed link: the form for the new password, or (no token) the request form. */
export function startFromLink(show) {
  resetToken = takeTokenFromAddress();
  if (!resetToken) {
    showForgotForm(show);
    return;
  }
  showMessage("reset-message", "");
  show("reset");
  byId("new-password").focus();
}

async function submitForgot(event) {
  event.preventDefault();
  const button = event.submitter;
  button.disabled = true;
  try {
    const answer = await api.requestPasswordReset(byId("forgot-email").value.trim());
    showMessage("forgot-message", "");
    byId("forgot-done").textContent = answer.detail;
    byId("forgot-done").hidden = false;
    byId("forgot-form").hidden = true;
  } catch (error) {
    showMessage("forgot-message", error.message);
  } finally {
    button.disabled = false;
  }
}

async function submitReset(event, done) {
  event.preventDefault();
  const password = byId("new-password").value;
  if (password !== byId("repeat-password").value) {
    showMessage("reset-message", "The two passwords differ.");
    return;
  }
  const button = event.submitter;
  button.disabled = true;
  try {
    await api.confirmPasswordReset(resetToken, password);
    resetToken = null;
    byId("reset-form").reset();
    history.replaceState(null, "", "/");
    done("Your password was changed and every session ended. Sign in with the new one.");
  } catch (error) {
    showMessage("reset-message", error.message);
  } finally {
    button.disabled = false;
  }
}

/** `show(view)` switches the page's view; `toSignIn(message)` goes back to the sign-in form. */
export function wireResetForms({ show, toSignIn }) {
  byId("forgot-password").addEventListener("click", () => showForgotForm(show));
  byId("forgot-form").addEventListener("submit", submitForgot);
  byId("reset-form").addEventListener("submit", (event) => submitReset(event, toSignIn));
  for (const button of document.querySelectorAll(".back-to-sign-in")) {
    button.addEventListener("click", () => {
      resetToken = null;
      history.replaceState(null, "", "/");
      toSignIn("");
    });
  }
}
