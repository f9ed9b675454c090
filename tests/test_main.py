"""main.py: `serve` (the default), `migrate`, `create-admin EMAIL`, `promote-admin EMAIL`, `unlock EMAIL`."""

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import main
from src.auth.config import auth_settings
from src.auth.constants import Role
from src.auth.models import User
from src.config import SAMPLE_SECRET_KEY, settings
from src.database import SessionFactory
from src.workers import cores_per_worker, usable_cores
from tests.conftest import DEFAULT_PASSWORD

PROJECT_DIR = Path(main.__file__).resolve().parent
ADMIN_EMAIL = "root@example.org"
ADMIN_PASSWORD = "a long admin password"


async def users_with_email(email: str) -> list[User]:
    async with SessionFactory() as session:
        return list(await session.scalars(select(User).where(User.email == email)))


async def user_count() -> int:
    async with SessionFactory() as session:
        return await session.scalar(select(func.count()).select_from(User))


def sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        connection.close()


# create_admin


async def test_create_admin_creates_an_active_admin():
    message = await main.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD, "Root")

    (admin,) = await users_with_email(ADMIN_EMAIL)
    assert admin.role == Role.ADMIN
    assert admin.is_active is True
    assert admin.full_name == "Root"
    assert message == f"Created admin {ADMIN_EMAIL} ({admin.id})."


async def test_created_admin_can_sign_in(client):
    await main.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD, "Root")

    response = await client.post(
        "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )

    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


async def test_create_admin_normalizes_the_email():
    await main.create_admin("  Root@Example.ORG ", ADMIN_PASSWORD, "Root")

    assert len(await users_with_email(ADMIN_EMAIL)) == 1


async def test_create_admin_with_a_taken_email_exits_and_changes_nothing(make_user):
    existing = await make_user(email=ADMIN_EMAIL, full_name="Already Here")

    with pytest.raises(SystemExit, match="already exists"):
        await main.create_admin("ROOT@example.org", ADMIN_PASSWORD, "Root")

    (stored,) = await users_with_email(ADMIN_EMAIL)
    assert stored.id == existing.id
    assert stored.role == Role.RESEARCHER
    assert stored.full_name == "Already Here"
    assert await user_count() == 1


async def test_create_admin_with_a_short_password_exits_naming_the_password():
    with pytest.raises(SystemExit, match="password") as caught:
        await main.create_admin(ADMIN_EMAIL, "tiny7", "Root")

    assert "tiny7" not in str(caught.value)
    assert await user_count() == 0


async def test_create_admin_with_an_invalid_email_exits_naming_the_email():
    with pytest.raises(SystemExit, match="email"):
        await main.create_admin("not-an-email", ADMIN_PASSWORD, "Root")

    assert await user_count() == 0


# read_admin_password


def test_admin_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setattr(main.getpass, "getpass", pytest.fail)

    assert main.read_admin_password() == ADMIN_PASSWORD


def test_admin_password_is_prompted_twice_without_the_environment(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    answers = iter([ADMIN_PASSWORD, ADMIN_PASSWORD])
    monkeypatch.setattr(main.getpass, "getpass", lambda _prompt: next(answers))

    assert main.read_admin_password() == ADMIN_PASSWORD


def test_differing_prompted_passwords_exit(monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    answers = iter([ADMIN_PASSWORD, "something else entirely"])
    monkeypatch.setattr(main.getpass, "getpass", lambda _prompt: next(answers))

    with pytest.raises(SystemExit, match="differ"):
        main.read_admin_password()


# The command line


def test_no_command_means_serve():
    assert main.parse_args([]).command is None


def test_create_admin_takes_the_email_and_a_default_full_name():
    args = main.parse_args(["create-admin", ADMIN_EMAIL])

    assert args.command == "create-admin"
    assert args.email == ADMIN_EMAIL
    assert args.full_name == "Administrator"


def test_create_admin_without_an_email_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main.parse_args(["create-admin"])

    assert caught.value.code == 2
    assert "email" in capsys.readouterr().err


def test_main_without_arguments_serves(monkeypatch):
    calls = []
    monkeypatch.setattr(main, "serve", lambda: calls.append("serve"))

    main.main([])

    assert calls == ["serve"]


def test_serve_migrates_then_runs_the_app_factory(monkeypatch):
    calls = []
    monkeypatch.setattr(main, "migrate", lambda: calls.append(("migrate",)))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: calls.append(("run", args, kwargs)))

    main.serve()

    assert [call[0] for call in calls] == ["migrate", "run"]
    _, args, kwargs = calls[1]
    assert args == ("src.app:create_app",)
    assert kwargs["factory"] is True
    assert kwargs["host"] == settings.HOST
    assert kwargs["port"] == settings.PORT


def test_serve_runs_one_process_so_password_hashing_may_use_every_core(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(main, "migrate", lambda: None)
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)

    main.serve()

    assert os.environ["WEB_CONCURRENCY"] == "1"
    assert cores_per_worker() == usable_cores()


def test_serve_keeps_a_configured_web_concurrency(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setattr(main, "migrate", lambda: None)
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)

    main.serve()

    assert os.environ["WEB_CONCURRENCY"] == "3"


def test_main_migrate_creates_the_schema_at_database_url(tmp_path, monkeypatch):
    path = tmp_path / "not-yet" / "studybase.db"
    monkeypatch.setattr(settings, "DATABASE_URL", f"sqlite+aiosqlite:///{path.as_posix()}")

    main.main(["migrate"])

    assert "users" in sqlite_tables(path)


async def test_main_create_admin_takes_the_password_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setattr(main.getpass, "getpass", pytest.fail)

    # In a worker thread: main() runs its own event loop, as it does from the command line.
    await asyncio.to_thread(main.main, ["create-admin", ADMIN_EMAIL, "--full-name", "Grace Hopper"])

    (admin,) = await users_with_email(ADMIN_EMAIL)
    assert admin.role == Role.ADMIN
    assert admin.full_name == "Grace Hopper"
    assert capsys.readouterr().out.strip() == f"Created admin {ADMIN_EMAIL} ({admin.id})."


async def test_database_still_works_after_create_admin_disposed_the_engine(client, make_user, login):
    await main.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD, "Root")
    user = await make_user()

    tokens = await login(user)

    assert tokens["access_token"]


def test_refused_settings_stop_main_with_one_clear_line(tmp_path):
    env = os.environ | {
        "ENVIRONMENT": "production",
        "SECRET_KEY": SAMPLE_SECRET_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{(tmp_path / 'x.db').as_posix()}",
    }

    result = subprocess.run(
        [sys.executable, "main.py", "migrate"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Refusing to start")
    assert "SECRET_KEY" in lines[0]
    assert "Traceback" not in result.stderr


async def test_promote_admin_makes_an_existing_account_an_active_admin(make_user, capsys):
    user = await make_user(email="grace@example.org", role=Role.VIEWER, is_active=False)

    await asyncio.to_thread(main.main, ["promote-admin", "  GRACE@example.org "])

    (promoted,) = await users_with_email("grace@example.org")
    assert (promoted.role, promoted.is_active) == (Role.ADMIN, True)
    assert promoted.password_hash == user.password_hash
    assert capsys.readouterr().out.strip() == f"Promoted grace@example.org ({user.id}) to active admin."


async def test_promote_admin_of_an_unknown_email_exits_and_creates_nothing():
    with pytest.raises(SystemExit, match=r"no account with the email nobody@example\.org"):
        await main.promote_admin("nobody@example.org")

    assert await users_with_email("nobody@example.org") == []


# unlock


async def lock_out_of_sign_in(client, email: str) -> None:
    for _ in range(auth_settings.LOGIN_MAX_FAILURES):
        await client.post("/api/v1/auth/token", data={"username": email, "password": "a wrong password"})


async def test_unlock_lifts_the_sign_in_lock(client, make_user, capsys):
    user = await make_user(email="grace@example.org")
    await lock_out_of_sign_in(client, user.email)
    credentials = {"username": user.email, "password": DEFAULT_PASSWORD}
    assert (await client.post("/api/v1/auth/token", data=credentials)).status_code == 429

    await asyncio.to_thread(main.main, ["unlock", "  GRACE@example.org "])

    assert capsys.readouterr().out.strip() == f"Cleared the sign-in locks of grace@example.org ({user.id})."
    assert (await client.post("/api/v1/auth/token", data=credentials)).status_code == 200


async def test_unlock_of_an_unknown_email_exits():
    with pytest.raises(SystemExit, match=r"no account with the email nobody@example\.org"):
        await main.unlock("nobody@example.org")


def test_unlock_takes_the_email():
    args = main.parse_args(["unlock", ADMIN_EMAIL])

    assert (args.command, args.email) == ("unlock", ADMIN_EMAIL)
