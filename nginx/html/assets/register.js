// Self-registration: the server answers the same for an address that is new and for one that already
// has an account (nobody learns who is registered), so the page can only send the user to their
// mailbox (the link that creates the account, or a note that the address has one) and then to
// sign-in. Where addresses must be verified, signing in works only once the mailed link is followed.

import * as api from "./api.js";
import { byId, showMessage } from "./dom.js";

function showRegisterForm(show) {
  byId("register-done").hidden = true;
  byId("register-form").hidden = false;
  showMessage("register-message", "");
  byId("register-email").value = byId("email").value.trim();
  show("register");
  byId("register-email").focus();
}

async function submitRegistration(event) {
  event.preventDefault();
  const button = event.submitter;
  button.disabled = true;
  try {
    const email = byId("register-email").value.trim();
    const answer = await api.register({
      email,
      password: byId("register-password").value,
      full_name: byId("register-name").value.trim(),
    });
    byId("register-form").reset();
    byId("email").value = email;  // the sign-in form is ready for the next step
    showMessage("register-message", "");
    byId("register-done").textContent = answer.detail;
    byId("register-done").hidden = false;
    byId("register-form").hidden = true;
  } catch (error) {
    showMessage("register-message", error.message);
  } finally {
    button.disabled = false;
  }
}

/** `show(view)` switches the page's view (the way back is reset.js's `.back-to-sign-in`). */
export function wireRegistration({ show }) {
  byId("create-account").addEventListener("click", () => showRegisterForm(show));
  byId("register-form").addEventListener("submit", submitRegistration);
}
