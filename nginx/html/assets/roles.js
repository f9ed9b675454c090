// What the signed-in user may do in a study, and what each status of its lifecycle allows: the
// server's rules (src/study/constants.py), so that the page shows no control the server would refuse.

const WRITABLE_STATUSES = ["draft", "active"];

/** Details, sample fields and samples: editors and owners, while the study is draft or active. */
export function mayEdit(study) {
  return ["owner", "editor"].includes(study.my_role) && WRITABLE_STATUSES.includes(study.status);
}

/** Status changes and deleting a draft: owners (administrators act as owners). */
export function isOwner(study) {
  return study.my_role === "owner";
}

export const STATUS_MEANING = {
  draft: "Draft: being set up. Sample fields may change freely until it has samples; a draft without samples can be deleted.",
  active:
    "Active: editors and owners add, edit and upload samples. Sample fields then change only in ways every existing sample still satisfies. It never goes back to draft.",
  locked:
    "Locked: read-only. Nobody can change its details, sample fields or samples, and uploads are refused; members and status still can change. An owner can unlock it or archive it.",
  archived:
    "Archived: read-only like a locked study, and left out of the studies list unless you filter for archived studies. An owner can bring it back as locked.",
};

// The lifecycle's moves (ALLOWED_TRANSITIONS) as the buttons that make them.
export const STATUS_MOVES = {
  draft: [{ to: "active", action: "Activate" }],
  active: [
    { to: "locked", action: "Lock" },
    { to: "archived", action: "Archive" },
  ],
  locked: [
    { to: "active", action: "Unlock" },
    { to: "archived", action: "Archive" },
  ],
  archived: [{ to: "locked", action: "Restore as locked" }],
};
