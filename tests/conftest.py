"""Test setup: a migrated database (SQLite, or TEST_DATABASE_URL), emptied after every test."""

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

# Settings are read at import, so the environment is fixed before anything from src is imported.
_TMP_DIR = Path(tempfile.mkdtemp(prefix="studybase-tests-"))
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or (
    f"sqlite+aiosqlite:///{(_TMP_DIR / 'test.db').as_posix()}"
)
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
os.environ.update(
    {
        "ENVIRONMENT": "test",
        "DATABASE_URL": TEST_DATABASE_URL,
        "SECRET_KEY": TEST_SECRET_KEY,
        "UPLOAD_DIR": str(_TMP_DIR / "uploads"),
        "STORAGE_URL": "",  # files in UPLOAD_DIR, whatever the shell says; the S3 tests set their own
        "CORS_ORIGINS": "",
        "LOG_LEVEL": "INFO",
        "OPEN_REGISTRATION": "true",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "15",
        "REFRESH_TOKEN_EXPIRE_DAYS": "14",
        "LOGIN_MAX_FAILURES": "5",
        "LOGIN_LOCKOUT_MINUTES": "15",
    }
)

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from main import migrate  # noqa: E402
from src.app import create_app  # noqa: E402
from src.auth import service as auth_service  # noqa: E402
from src.auth.constants import Role  # noqa: E402
from src.auth.models import User  # noqa: E402
from src.database import Base, SessionFactory, create_engine_for, engine, run_async  # noqa: E402
from src.mail.composers import COMPOSERS  # noqa: E402
from src.mail.config import mail_settings  # noqa: E402
from src.mail.service import deliver_due_mails  # noqa: E402
from src.models import import_all_models  # noqa: E402
from src.study import samples as study_samples  # noqa: E402
from src.study import service as study_service  # noqa: E402
from src.study.constants import SampleStatus, StudyRole, StudyStatus  # noqa: E402
from src.study.models import Sample, Study, StudyMember  # noqa: E402
from src.study.schemas import SampleCreate, StudyCreate  # noqa: E402
from src.third_party.mail import OutgoingMail  # noqa: E402
from tests.s3_server import S3TestServer, running_s3_server  # noqa: E402
from tests.smtp_server import SmtpTestServer, running_smtp_server  # noqa: E402

import_all_models()
DEFAULT_PASSWORD = "correct horse battery staple"


async def _reset_postgresql_schema(url: str) -> None:
    reset_engine = create_engine_for(url, request_timeouts=False)
    async with reset_engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await reset_engine.dispose()


def pytest_asyncio_loop_factories(config, item):
    """Selector loops everywhere: psycopg's async mode cannot use Windows' default proactor loop."""
    return {"selector": asyncio.SelectorEventLoop}


@pytest.fixture(scope="session", autouse=True)
def migrated_database() -> Iterator[str]:
    """The schema comes only from migrations, as in production."""
    if TEST_DATABASE_URL.startswith("postgresql"):
        run_async(_reset_postgresql_schema(TEST_DATABASE_URL))
    migrate(TEST_DATABASE_URL)
    yield TEST_DATABASE_URL
    shutil.rmtree(_TMP_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
async def clean_database() -> AsyncIterator[None]:
    yield
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())


@pytest.fixture(scope="session")
def app():
    return create_app()


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def client_from(app) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """`other = client_from("198.51.100.9")`: a client of the same app speaking from another address."""
    async with contextlib.AsyncExitStack() as stack:

        def open_client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(http.aclose)
            return http

        yield open_client


@pytest.fixture
async def db() -> AsyncIterator[AsyncSession]:
    async with SessionFactory() as session:
        yield session


_user_counter = iter(range(1, 1_000_000))


@pytest.fixture
def make_user() -> Callable[..., Awaitable[User]]:
    """`await make_user(role=Role.ADMIN)`: a user straight in the database, password DEFAULT_PASSWORD,
    its address verified unless `verified=False`."""

    async def make(
        *,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        full_name: str = "Test User",
        role: Role = Role.RESEARCHER,
        is_active: bool = True,
        verified: bool = True,
    ) -> User:
        async with SessionFactory() as session:
            user = await auth_service.create_user(
                session,
                email=email or f"user{next(_user_counter)}@example.org",
                password=password,
                full_name=full_name,
                role=role,
                email_verified=verified,
            )
            if not is_active:
                user.is_active = False
                await session.commit()
            return user

    return make


@pytest.fixture
def login(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict]]:
    """`tokens = await login(user)`: signs in through the API and returns the token pair."""

    async def sign_in(user: User, password: str = DEFAULT_PASSWORD, **headers: str) -> dict:
        response = await client.post(
            "/api/v1/auth/token", data={"username": user.email, "password": password}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    return sign_in


_study_counter = iter(range(1, 1_000_000))


@pytest.fixture
def make_study(make_user) -> Callable[..., Awaitable[Study]]:
    """`await make_study(owner=alice, sample_fields=[...], status=StudyStatus.ACTIVE)` via the service."""

    async def make(
        *,
        owner: User | None = None,
        code: str | None = None,
        title: str = "A study",
        description: str | None = None,
        sample_fields: list[dict] | None = None,
        status: StudyStatus = StudyStatus.DRAFT,
    ) -> Study:
        owner = owner or await make_user()
        data = StudyCreate(
            code=code or f"ST-{next(_study_counter)}",
            title=title,
            description=description,
            sample_fields=sample_fields or [],
        )
        async with SessionFactory() as session:
            study = (await study_service.create_study(session, owner=owner, data=data)).study
            if status != StudyStatus.DRAFT:
                study.status = status  # straight to the state the test needs, whatever the path
                await session.commit()
            return study

    return make


@pytest.fixture
def add_member() -> Callable[..., Awaitable[None]]:
    """`await add_member(study, user, StudyRole.EDITOR)`: straight in the database."""

    async def add(study: Study, user: User, role: StudyRole) -> None:
        async with SessionFactory() as session:
            session.add(StudyMember(study_id=study.id, user_id=user.id, role=role))
            await session.commit()

    return add


_sample_counter = iter(range(1, 1_000_000))


@pytest.fixture
def make_sample() -> Callable[..., Awaitable[Sample]]:
    """`await make_sample(study, values={...})`: validated and counted through the service, by the creator."""

    async def make(
        study: Study,
        *,
        sample_id: str | None = None,
        values: dict | None = None,
        status: SampleStatus = SampleStatus.REGISTERED,
    ) -> Sample:
        async with SessionFactory() as session:
            current = await session.get(Study, study.id)
            creator = await session.get(User, current.created_by)
            access = study_service.StudyAccess(study=current, user=creator, role=StudyRole.OWNER)
            data = SampleCreate(
                sample_id=sample_id or f"S-{next(_sample_counter)}", status=status, values=values or {}
            )
            return await study_samples.create_sample(session, access=access, data=data)

    return make


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A real SMTP server on a free loopback port, keeping what it is sent (tests/smtp_server.py)."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    """A real S3 HTTP API (moto's server mode) on a free loopback port, for the whole run; each
    test takes a bucket of its own (`s3_server.new_bucket()`)."""
    with running_s3_server() as server:
        yield server


PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    """The one error shape: status, problem+json, every field, and the request id of the response."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def auth_headers(login) -> Callable[..., Awaitable[dict[str, str]]]:
    """`headers = await auth_headers(user)`: an Authorization header for a fresh session of the user."""

    async def headers_for(user: User) -> dict[str, str]:
        return bearer(await login(user))

    return headers_for


class KeptMails:
    """A mail transport that keeps what it is handed (where no SMTP server is the point of a test)."""

    def __init__(self) -> None:
        self.mails: list[OutgoingMail] = []

    async def send(self, mail: OutgoingMail) -> None:
        self.mails.append(mail)


def link_token(text: str, page: str) -> str:
    """The token of the one link to `page` in a mail's text, read from the fragment as the page does."""
    (link,) = [word for word in text.split() if word.startswith(f"{mail_settings.PUBLIC_URL}{page}#")]
    (token,) = parse_qs(urlsplit(link).fragment)["token"]
    return token


async def send_kept_mails() -> list[OutgoingMail]:
    """Sends every due mail to a KeptMails and returns them."""
    kept = KeptMails()
    await deliver_due_mails(transport=kept, composers=COMPOSERS, max_mails=100)
    return kept.mails


@pytest.fixture
def join_by_invitation(client: httpx.AsyncClient, auth_headers) -> Callable[..., Awaitable[None]]:
    """`await join_by_invitation(study, owner, user, "editor")`: the owner invites the user's address,
    the mailed token is read from the outbox's mail and the user accepts it: the one way in."""

    async def join(study: Study, owner: User, user: User, role: str) -> None:
        study_id = getattr(study, "id", study)
        invited = await client.post(
            f"/api/v1/studies/{study_id}/members",
            json={"email": user.email, "role": role},
            headers=await auth_headers(owner),
        )
        assert invited.status_code == 202, invited.text
        (mail,) = [mail for mail in await send_kept_mails() if mail.recipient == user.email]
        accepted = await client.post(
            "/api/v1/invitations/accept",
            json={"token": link_token(mail.text, "/invitations")},
            headers=await auth_headers(user),
        )
        assert accepted.status_code == 200, accepted.text

    return join
