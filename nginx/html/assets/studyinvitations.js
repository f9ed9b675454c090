// A study's invitations, its owners' side (the invitee's side is invitations.js): invite an address
// with a role, see the pending invitations, send one again or revoke it.

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { clearErrors, confirmChange, placeError, showProblem, whileSending } from "./forms.js";
import { actionButton } from "./views.js";

const INVITATIONS_PAGE_SIZE = 100;

let current = null;  // { study, isCurrent }

function notice(text) {
  byId("invite-done").textContent = text;
  byId("invite-done").hidden = !text;
}

function invitationRow(invitation) {
  const again = actionButton("Send again", () => resendInvitation(invitation, again));
  again.setAttribute("aria-label", `Send again to ${invitation.email}`);
  const revoke = actionButton("Revoke", () => revokeInvitation(invitation, revoke));
  revoke.setAttribute("aria-label", `Revoke the invitation to ${invitation.email}`);
  return el("tr", { attributes: { "data-invitation-id": invitation.id } }, [
    el("td", { text: invitation.email }),
    el("td", { text: humanize(invitation.role) }),
    el("td", { text: invitation.invited_by_name || "a deleted account" }),
    el("td", { text: invitation.expired ? "expired: send it again" : formatWhen(invitation.expires_at) }),
    el("td", { className: "actions" }, [again, revoke]),
  ]);
}

async function listInvitations() {
  const { study, isCurrent } = current;
  try {
    const page = await api.getJson(`/studies/${study.id}/invitations?page_size=${INVITATIONS_PAGE_SIZE}`);
    if (isCurrent() && current.study === study) {
      byId("invitations-table").tBodies[0].replaceChildren(...page.items.map(invitationRow));
      byId("invitations-empty").hidden = page.items.length > 0;
    }
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("invite-message", error.message);
    }
  }
}

async function resendInvitation(invitation, button) {
  try {
    await api.postJson(`/studies/${current.study.id}/invitations/${invitation.id}/resend`);
    notice(`The invitation to ${invitation.email} was mailed again; the earlier link no longer works.`);
    await listInvitations();
  } catch (error) {
    if (error.status !== 401) {
      placeError(button, error.message);
    }
  }
}

async function revokeInvitation(invitation, button) {
  const confirmed = await confirmChange({
    title: `Revoke the invitation to ${invitation.email}?`,
    text: "Its link stops working at once; you can invite the address again later.",
    action: "Revoke",
  });
  if (!confirmed) {
    return;
  }
  try {
    await api.sendJson("DELETE", `/studies/${current.study.id}/invitations/${invitation.id}`);
    notice(`The invitation to ${invitation.email} was revoked.`);
    await listInvitations();
  } catch (error) {
    if (error.status !== 401) {
      placeError(button, error.message);
    }
  }
}

async function invite() {
  const form = byId("invite-form");
  clearErrors(form, "invite-message");
  notice("");
  const body = { email: byId("invite-email").value.trim(), role: byId("invite-role").value };
  try {
    const sent = await api.postJson(`/studies/${current.study.id}/members`, body);
    notice(`${sent.email} was mailed an invitation as ${sent.role}.`);
    byId("invite-email").value = "";
    await listInvitations();
  } catch (error) {
    if (error.status === 401) {
      return;
    }
    // A member already (409) or an address the server refuses: said beside the address.
    if (error.status === 409) {
      placeError(byId("invite-email"), error.message);
      return;
    }
    showProblem(error, "invite-message", (loc) => ({ email: byId("invite-email"), role: byId("invite-role") })[loc[1]] || null);
  }
}

/** The owners' invitations panel of `study` (hidden for everyone else, who may not see them). */
export function loadStudyInvitations(study, isCurrent, owner) {
  current = { study, isCurrent };
  byId("invitations-panel").hidden = !owner;
  byId("invitations-table").tBodies[0].replaceChildren();
  clearErrors(byId("invite-form"), "invite-message");
  notice("");
  return owner ? listInvitations() : undefined;
}

export function wireStudyInvitations() {
  byId("invite-form").addEventListener("submit", (event) => whileSending(event, invite));
}
