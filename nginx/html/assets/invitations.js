// Invitations and verified addresses. A mailed invitation opens /invitations#token=...: accept it
// signed in (or signing in, or registering with the invited address, which verifies it), or decline
// it. A mailed verification link opens /verify-email#token=... and verifies at once (a registration's
// link, where addresses must be verified, creates the account with the password chosen here). The signed-in overview lists the
// invitations to your address, to accept or decline without the mail. Tokens are read once from the
// fragment (which no server ever sees) and taken out of the address bar.

import * as api from "./api.js";
import { byId, el, showMessage } from "./dom.js";

export const INVITATIONS_PATH = "/invitations";
export const VERIFY_PATH = "/verify-email";
const EMAIL_NOT_VERIFIED = "EMAIL_NOT_VERIFIED";
const PASSWORD_REQUIRED = "PASSWORD_REQUIRED";
const VERIFICATION_TOKEN_INVALID = "VERIFICATION_TOKEN_INVALID";

let invitationToken = null;
let verifyToken = null;

function takeTokenFromAddress(path) {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token");
  history.replaceState(null, "", path);
  return token;
}

function joined(answer) {
  return `You joined the study ${answer.study.code} (${answer.study.title}) as ${answer.role}.`;
}

function showInvitationChoices() {
  const live = invitationToken !== null;
  const signedIn = api.hasSession();
  byId("invitation-signed-in").hidden = !live || !signedIn;
  byId("invitation-signed-out").hidden = !live || signedIn;
  byId("invitation-decline").hidden = !live;
}

/** Opened from a mailed invitation link. */
export function startInvitationFromLink(show) {
  invitationToken = takeTokenFromAddress(INVITATIONS_PATH) || null;
  byId("invitation-done").hidden = true;
  showMessage("invitation-message", invitationToken ? "" : "This link carries no invitation; open the one in the mail again.");
  showInvitationChoices();
  show("invitation");
}

/** Opened from a mailed verification link: verifies at once and says how it went. A registration's
 * link answers PASSWORD_REQUIRED instead (the link still works): the account's password is chosen
 * here, by the link's holder, so the form asks for it. */
export async function startVerifyFromLink(show) {
  verifyToken = takeTokenFromAddress(VERIFY_PATH) || null;
  byId("verify-done").hidden = true;
  byId("verify-form").hidden = true;
  showMessage("verify-message", "");
  show("verify");
  if (!verifyToken) {
    showMessage("verify-message", "This link carries no verification token; open the one in the mail again.");
    return;
  }
  await sendVerification();
}

/** Sends the link's token (and the chosen password, for a registration's link). */
async function sendVerification(password) {
  try {
    await api.verifyEmail(verifyToken, password);
  } catch (error) {
    const code = error.problem ? error.problem.code : null;
    // The form stays while the link still works: a password is asked for, or the chosen one refused.
    const asking = code === PASSWORD_REQUIRED || (password !== undefined && code !== VERIFICATION_TOKEN_INVALID);
    byId("verify-form").hidden = !asking;
    showMessage("verify-message", error.message);
    return;
  }
  verifyToken = null;
  byId("verify-form").reset();
  byId("verify-form").hidden = true;
  showMessage("verify-message", "");
  byId("verify-done").textContent =
    password === undefined
      ? "Your email address is verified. Thank you! If you just created your account, sign in with the password you chose."
      : "Your account is created and its address verified. Sign in with the password you just chose.";
  byId("verify-done").hidden = false;
}

async function submitVerifyPassword(event) {
  event.preventDefault();
  const password = byId("verify-password").value;
  if (password !== byId("verify-repeat-password").value) {
    showMessage("verify-message", "The two passwords differ.");
    return;
  }
  await withButton(event.submitter, "verify-message", () => sendVerification(password));
}

/** Runs `work` with the submitting button disabled; its error goes to `messageBox`. */
async function withButton(button, messageBox, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    if (error.status !== 401 || messageBox !== "my-invitations-message") {
      showMessage(messageBox, error.message);
    }
  } finally {
    button.disabled = false;
  }
}

function leaveInvitation() {
  invitationToken = null;
  history.replaceState(null, "", "/");
}

function invitationItem(invitation, answer) {
  const until = new Date(invitation.expires_at).toLocaleDateString("en");
  const from = invitation.invited_by_name ? ` from ${invitation.invited_by_name}` : "";
  const text = `${invitation.study.code} — ${invitation.study.title}: as ${invitation.role}${from} (until ${until}) `;
  const accept = el("button", { text: "Accept", attributes: { type: "button" } });
  const decline = el("button", { text: "Decline", attributes: { type: "button" } });
  accept.addEventListener("click", () => answer(accept, invitation, "accept"));
  decline.addEventListener("click", () => answer(decline, invitation, "decline"));
  return el("li", {}, [el("span", { text }), accept, decline]);
}

/** The invitations to the signed-in user's address, in the overview; hidden when there are none. */
export async function loadMyInvitations(onJoined) {
  const panel = byId("my-invitations");
  byId("resend-verification").hidden = true;
  showMessage("my-invitations-message", "");
  let page;
  try {
    page = await api.getJson("/invitations?page_size=100");
  } catch (error) {
    const unverified = error.problem && error.problem.code === EMAIL_NOT_VERIFIED;
    panel.hidden = !unverified;
    if (unverified) {
      byId("my-invitations-list").replaceChildren();
      showMessage("my-invitations-message", error.message);
      byId("resend-verification").hidden = false;
    }
    return;
  }
  const answer = (button, invitation, action) =>
    withButton(button, "my-invitations-message", async () => {
      const result = await api.postJson(`/invitations/${invitation.id}/${action}`);
      await loadMyInvitations(onJoined);
      onJoined(result ? joined(result) : `You declined the invitation to ${invitation.study.code}.`);
    });
  byId("my-invitations-list").replaceChildren(...page.items.map((item) => invitationItem(item, answer)));
  panel.hidden = page.items.length === 0;
}

/** `enter(notice)` opens the signed-in overview with a notice; `toSignIn(message)` the sign-in form. */
export function wireInvitationViews({ enter, toSignIn }) {
  byId("invitation-accept").addEventListener("click", (event) =>
    withButton(event.currentTarget, "invitation-message", async () => {
      const answer = await api.acceptInvitation(invitationToken);
      leaveInvitation();
      await enter(joined(answer));
    }),
  );
  byId("invitation-sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    return withButton(event.submitter, "invitation-message", async () => {
      await api.signIn(byId("invitation-email").value.trim(), byId("invitation-password").value);
      byId("invitation-password").value = "";
      showInvitationChoices();  // signed in now: if accepting fails, the accept button stays
      const answer = await api.acceptInvitation(invitationToken);
      leaveInvitation();
      await enter(joined(answer));
    });
  });
  byId("invitation-register-form").addEventListener("submit", (event) => {
    event.preventDefault();
    return withButton(event.submitter, "invitation-message", async () => {
      const email = byId("invitation-new-email").value.trim();
      const password = byId("invitation-new-password").value;
      await api.register({
        email,
        password,
        full_name: byId("invitation-name").value.trim(),
        invitation_token: invitationToken,
      });
      byId("invitation-register-form").reset();
      leaveInvitation();
      await api.signIn(email, password);
      await enter("Your account is ready, its address verified, and you joined the study.");
    });
  });
  byId("invitation-decline").addEventListener("click", (event) =>
    withButton(event.currentTarget, "invitation-message", async () => {
      await api.declineInvitation(invitationToken);
      invitationToken = null;
      showInvitationChoices();
      byId("invitation-done").textContent = "You declined the invitation; nobody will add you to that study.";
      byId("invitation-done").hidden = false;
    }),
  );
  byId("verify-form").addEventListener("submit", submitVerifyPassword);
  byId("verify-continue").addEventListener("click", () => {
    history.replaceState(null, "", "/");
    if (api.hasSession()) {
      enter("");
    } else {
      toSignIn("");
    }
  });
  byId("resend-verification").addEventListener("click", (event) =>
    withButton(event.currentTarget, "my-invitations-message", async () => {
      const answer = await api.postJson("/auth/verify-email/resend");
      showMessage("my-invitations-message", answer.detail);
    }),
  );
}
