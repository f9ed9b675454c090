// A study's members view: who is in it, with which role. Owners change a member's role or remove
// them (after a confirmation); the last owner can be neither, which the view says beforehand and the
// server's refusal, should it come, says beside the row. The invitations are studyinvitations.js's.

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";
import { confirmChange, placeError } from "./forms.js";
import { isOwner } from "./roles.js";

const MEMBERS_PAGE_SIZE = 100;
const ROLES = ["owner", "editor", "viewer"];
const LAST_OWNER_RULE =
  "A study keeps at least one owner: the last owner can be neither given another role nor removed; make someone else owner first.";

let current = null;  // { study, isCurrent }

function roleSelect(member) {
  const select = el(
    "select",
    { attributes: { "aria-label": `Role of ${member.full_name}` } },
    ROLES.map((role) => el("option", { text: humanize(role), attributes: { value: role } })),
  );
  select.value = member.role;
  return select;
}

function button(text, label, action, className = "secondary") {
  const made = el("button", { className, text, attributes: { type: "button", "aria-label": label } });
  made.addEventListener("click", action);
  return made;
}

/** A member's row; for owners with the controls to change the role or remove the member. */
function memberRow(member, editable) {
  const cells = [el("td", { text: member.full_name }), el("td", { text: member.email })];
  if (editable) {
    const select = roleSelect(member);
    const change = button("Change role", `Change role of ${member.full_name}`, () => changeRole(member, select));
    const remove = button("Remove", `Remove ${member.full_name}`, () => removeMember(member, remove), "danger");
    cells.push(el("td", { className: "actions" }, [select, change]), el("td", { text: formatWhen(member.added_at) }), el("td", {}, [remove]));
  } else {
    cells.push(el("td", { text: humanize(member.role) }), el("td", { text: formatWhen(member.added_at) }));
  }
  return el("tr", { attributes: { "data-user-id": member.user_id } }, cells);
}

async function write(work, control) {
  showMessage("members-message", "");
  try {
    await work();
    await loadMembers(current.study, current.isCurrent);
  } catch (error) {
    if (error.status !== 401) {
      placeError(control, error.message);
    }
  }
}

function changeRole(member, select) {
  if (select.value === member.role) {
    return undefined;
  }
  const path = `/studies/${current.study.id}/members/${member.user_id}`;
  return write(() => api.sendJson("PATCH", path, { role: select.value }), select);
}

async function removeMember(member, control) {
  const confirmed = await confirmChange({
    title: `Remove ${member.full_name}?`,
    text: `${member.full_name} (${member.email}) will no longer see this study; inviting them again brings them back.`,
    action: "Remove",
  });
  if (confirmed) {
    await write(() => api.sendJson("DELETE", `/studies/${current.study.id}/members/${member.user_id}`), control);
  }
}

export async function loadMembers(study, isCurrent) {
  current = { study, isCurrent };
  const editable = isOwner(study);
  showMessage("members-message", "");
  byId("members-rule").textContent = editable ? LAST_OWNER_RULE : "";
  byId("members-table").tHead.rows[0].replaceChildren(
    ...["Name", "Email", "Role", "Member since", ...(editable ? ["Remove"] : [])].map((name) => el("th", { text: name, attributes: { scope: "col" } })),
  );
  try {
    const page = await api.getJson(`/studies/${study.id}/members?page_size=${MEMBERS_PAGE_SIZE}`);
    if (isCurrent()) {
      byId("members-table").tBodies[0].replaceChildren(...page.items.map((member) => memberRow(member, editable)));
    }
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("members-message", error.message);
    }
  }
}
