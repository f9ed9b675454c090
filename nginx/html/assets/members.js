// A study's members view: who is in it, with which role (read-only for now; role changes and
// invitations come with their own step).

import * as api from "./api.js";
import { byId, el, formatWhen, humanize, showMessage } from "./dom.js";

const MEMBERS_PAGE_SIZE = 100;

export async function loadMembers(study, isCurrent) {
  showMessage("members-message", "");
  try {
    const page = await api.getJson(`/studies/${study.id}/members?page_size=${MEMBERS_PAGE_SIZE}`);
    if (!isCurrent()) {
      return;
    }
    byId("members-table").tBodies[0].replaceChildren(
      ...page.items.map((member) =>
        el("tr", { attributes: { "data-user-id": member.user_id } }, [
          el("td", { text: member.full_name }),
          el("td", { text: member.email }),
          el("td", { text: humanize(member.role) }),
          el("td", { text: formatWhen(member.added_at) }),
        ]),
      ),
    );
  } catch (error) {
    if (error.status !== 401 && isCurrent()) {
      showMessage("members-message", error.message);
    }
  }
}
