"""Which sample file the caller means, and may they read or delete it (one query for both)."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from src.database import DbSession
from src.dependencies import CurrentUser
from src.sampleFileUpload import service
from src.sampleFileUpload.exceptions import SampleFileNotFound
from src.sampleFileUpload.service import FileAccess
from src.sampleFileUpload.storage import Storage, get_storage
from src.study.constants import ROLE_RANK, WRITABLE_STATUSES, StudyRole
from src.study.exceptions import StudyReadOnly, StudyRoleRequired


async def valid_sample_file_for_member(file_id: uuid.UUID, user: CurrentUser, db: DbSession) -> FileAccess:
    """A non-member gets 404, as for the study itself: the file's existence is not revealed."""
    found = await service.get_file_access(db, file_id=file_id, user=user)
    if found is None:
        raise SampleFileNotFound
    return found


def _requiring(role: StudyRole) -> Callable[..., Awaitable[FileAccess]]:
    async def valid_sample_file_for_role(
        found: Annotated[FileAccess, Depends(valid_sample_file_for_member)],
    ) -> FileAccess:
        if ROLE_RANK[found.access.role] < ROLE_RANK[role]:
            raise StudyRoleRequired
        return found

    return valid_sample_file_for_role


valid_sample_file_for_reader = _requiring(StudyRole.VIEWER)
valid_sample_file_for_editor = _requiring(StudyRole.EDITOR)
valid_sample_file_for_owner = _requiring(StudyRole.OWNER)


async def valid_sample_file_for_deletion(
    found: Annotated[FileAccess, Depends(valid_sample_file_for_owner)],
) -> FileAccess:
    """The owner's file, in a study whose data may still change (locked and archived are frozen)."""
    if found.access.study.status not in WRITABLE_STATUSES:
        raise StudyReadOnly
    return found


ReadableSampleFile = Annotated[FileAccess, Depends(valid_sample_file_for_reader)]
# Cancelling an import writes nothing of the study: allowed whatever its status.
CancellableSampleFile = Annotated[FileAccess, Depends(valid_sample_file_for_editor)]
DeletableSampleFile = Annotated[FileAccess, Depends(valid_sample_file_for_deletion)]
FileStorage = Annotated[Storage, Depends(get_storage)]
