"""Run Studybase: `python main.py` serves the API; subcommands migrate, run the job queue's worker,
add admins, unlock sign-ins, send the mail the outbox holds, prune what only grows, and back up and
restore the database with its stored files."""

import argparse
import getpass
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from pydantic import ValidationError

from src.auth.constants import PRUNE_BATCH_ROWS, PRUNE_MAX_ROWS_PER_TABLE

PROJECT_DIR = Path(__file__).resolve().parent
# `python main.py send-mail`: mails sent in one run at most (the next run goes on).
SEND_MAIL_MAX = 1000
NO_QUEUE_ON_SQLITE = (
    "Not started: the job queue needs PostgreSQL (DATABASE_URL). On SQLite `python main.py` runs "
    "everything in one process; run `python main.py prune` on a schedule."
)


def migrate(database_url: str | None = None) -> None:
    """Apply every migration to DATABASE_URL (or the given URL)."""
    from src.config import settings
    from src.database import ensure_sqlite_directory

    url = database_url or settings.DATABASE_URL
    ensure_sqlite_directory(url)
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


def serve() -> None:
    import uvicorn

    from src.config import settings

    # One process serves here, not gunicorn's workers: its share of the cores is all of them.
    os.environ.setdefault("WEB_CONCURRENCY", "1")
    migrate()
    uvicorn.run(
        "src.app:create_app",
        factory=True,
        host=settings.HOST,
        port=settings.PORT,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        loop="asyncio:SelectorEventLoop",  # psycopg's async mode cannot use Windows' proactor loop
    )


def read_admin_password() -> str:
    password = os.environ.get("ADMIN_PASSWORD")
    if password:
        return password
    first = getpass.getpass("Password for the new admin: ")
    if first != getpass.getpass("Repeat it: "):
        raise SystemExit("The passwords differ; nothing was created.")
    return first


async def create_admin(email: str, password: str, full_name: str) -> str:
    from src.auth import service
    from src.auth.constants import Role
    from src.auth.exceptions import EmailTaken
    from src.auth.schemas import RegisterRequest
    from src.database import SessionFactory, engine

    try:
        data = RegisterRequest(email=email, password=password, full_name=full_name)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"Not created: {problems}") from None
    try:
        async with SessionFactory() as session:
            user = await service.create_user(
                session,
                email=data.email,
                password=data.password,
                full_name=data.full_name,
                role=Role.ADMIN,
                email_verified=True,  # the operator vouches for the address
            )
    except EmailTaken:
        raise SystemExit(f"Not created: an account with the email {data.email} already exists.") from None
    finally:
        await engine.dispose()
    return f"Created admin {user.email} ({user.id})."


async def promote_admin(email: str) -> str:
    """Makes an existing account an active admin: the way back if no admin is left."""
    from src.auth import service
    from src.database import SessionFactory, engine

    try:
        async with SessionFactory() as session:
            user = await service.promote_to_admin(session, email=email)
    finally:
        await engine.dispose()
    if user is None:
        raise SystemExit(f"Not promoted: there is no account with the email {email}.")
    return f"Promoted {user.email} ({user.id}) to active admin."


async def unlock(email: str) -> str:
    """Lifts every sign-in lock and slowdown of an account, as the admin route does."""
    from src.auth import service
    from src.database import SessionFactory, engine

    try:
        async with SessionFactory() as session:
            user = await service.clear_login_throttles_by_email(session, email=email)
    finally:
        await engine.dispose()
    if user is None:
        raise SystemExit(f"Not unlocked: there is no account with the email {email}.")
    return f"Cleared the sign-in locks of {user.email} ({user.id})."


async def prune(*, batch_rows: int, max_rows: int) -> str:
    """Deletes what only grows (src/pruning.py), once; bounded, so safe on a schedule."""
    from src.database import engine
    from src.pruning import prune_what_only_grows

    try:
        pruned = await prune_what_only_grows(batch_rows=batch_rows, max_rows=max_rows)
    finally:
        await engine.dispose()
    if pruned.orphan_files is None:  # an exit status a scheduler reports
        raise SystemExit(pruned.summary())
    return pruned.summary()


async def worker() -> str:
    """Runs the job queue's worker (src/job_queue.py) until SIGTERM or SIGINT."""
    from src.database import engine
    from src.job_queue import JobQueueUnavailable, run_worker

    try:
        await run_worker()
    except JobQueueUnavailable:
        raise SystemExit(NO_QUEUE_ON_SQLITE) from None
    finally:
        await engine.dispose()
    return "The worker stopped."


async def send_mail(*, max_mails: int) -> str:
    """Sends up to `max_mails` due mails of the outbox once (the API's processes do so all the time;
    this is for cron, or after an outage). Several may run at once: no mail goes out twice."""
    from src.database import engine
    from src.mail import service as mail_service
    from src.mail.config import mail_settings
    from src.mail.jobs import send_due_mails

    if not mail_settings.sends_mail:
        raise SystemExit("Not sent: SMTP_URL is not set, and outside development and test mail needs it.")
    try:
        counts: mail_service.DeliveryCounts = await send_due_mails(max_mails=max_mails)
    finally:
        await engine.dispose()
    return (
        f"Sent {counts.sent} mails; {counts.retried} to try again later, {counts.failed} failed, "
        f"{counts.dropped} dropped."
    )


def backup(directory: Path) -> str:
    """The database (pg_dump) and every file it names, with a manifest, into a new directory."""
    from src.backup import back_up
    from src.config import settings
    from src.sampleFileUpload.storage import get_storage

    manifest = back_up(directory, database_url=settings.DATABASE_URL, storage=get_storage())
    return (
        f"Backed up {sum(manifest.tables.values())} rows of {len(manifest.tables)} tables and "
        f"{len(manifest.files)} files into {directory} (revision {manifest.alembic_revision})."
    )


def restore(directory: Path) -> str:
    """A backup into the empty database DATABASE_URL and the file store STORAGE_URL, then verified."""
    from src.backup import restore as restore_backup
    from src.config import settings
    from src.sampleFileUpload.storage import get_storage

    manifest = restore_backup(directory, database_url=settings.DATABASE_URL, storage=get_storage())
    return (
        f"Restored and verified {sum(manifest.tables.values())} rows of {len(manifest.tables)} tables "
        f"and {len(manifest.files)} files from {directory} (backup of {manifest.created_at}, "
        f"revision {manifest.alembic_revision})."
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python main.py", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="apply migrations, then serve the API (the default)")
    commands.add_parser("migrate", help="apply every migration to DATABASE_URL")
    commands.add_parser(
        "worker",
        help="run the job queue's worker (PostgreSQL): the periodic prune (PRUNE_CRON); stops on SIGTERM",
    )
    admin = commands.add_parser(
        "create-admin", help="create an admin account (password from ADMIN_PASSWORD or a prompt)"
    )
    admin.add_argument("email")
    admin.add_argument("--full-name", default="Administrator")
    promote = commands.add_parser("promote-admin", help="make an existing account an active admin")
    promote.add_argument("email")
    unlock_parser = commands.add_parser("unlock", help="lift every sign-in lock and slowdown of an account")
    unlock_parser.add_argument("email")
    send_parser = commands.add_parser(
        "send-mail", help="send the due mails of the outbox once (bounded: for cron or after an outage)"
    )
    send_parser.add_argument(
        "--max-mails", type=positive_int, default=SEND_MAIL_MAX, help="at most this many mails a run"
    )
    prune_parser = commands.add_parser(
        "prune",
        help="delete stale sign-in throttles, long-ended sessions, long-rotated refresh tokens, expired "
        "link tokens, finished mails and files a killed worker left in UPLOAD_DIR (bounded: run it on a "
        "schedule)",
    )
    prune_parser.add_argument(
        "--batch-rows", type=positive_int, default=PRUNE_BATCH_ROWS, help="rows deleted per transaction"
    )
    prune_parser.add_argument(
        "--max-rows",
        type=positive_int,
        default=PRUNE_MAX_ROWS_PER_TABLE,
        help="at most this many rows of each kind a run",
    )
    backup_parser = commands.add_parser(
        "backup",
        help="write the database (pg_dump, from one snapshot), every stored file it names and a manifest "
        "into a new directory (PostgreSQL; needs its client's pg_dump)",
    )
    backup_parser.add_argument("directory", type=Path)
    restore_parser = commands.add_parser(
        "restore",
        help="restore a backup directory into an EMPTY database (DATABASE_URL) and file store "
        "(STORAGE_URL or UPLOAD_DIR), then check every table's row count and every file's sha256",
    )
    restore_parser.add_argument("directory", type=Path)
    return parser.parse_args(argv)


def describe_refused_settings(exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
    return f"Refusing to start, the configuration is not acceptable: {problems}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_command(args)
    except ValidationError as exc:  # settings are validated when src.config is first imported
        raise SystemExit(describe_refused_settings(exc)) from None


def run_async_command(command: Coroutine[Any, Any, str]) -> str:
    from src.database import run_async

    return run_async(command)


def run_backup_command(args: argparse.Namespace) -> None:
    """No migration first: a backup takes the database as it is, a restore brings its own schema."""
    from src.backup import BackupError

    try:
        print(backup(args.directory) if args.command == "backup" else restore(args.directory))
    except BackupError as error:
        raise SystemExit(str(error)) from None


def run_command(args: argparse.Namespace) -> None:
    if args.command == "migrate":
        migrate()
    elif args.command == "create-admin":
        migrate()
        print(run_async_command(create_admin(args.email, read_admin_password(), args.full_name)))
    elif args.command == "promote-admin":
        migrate()
        print(run_async_command(promote_admin(args.email)))
    elif args.command == "prune":
        migrate()
        print(run_async_command(prune(batch_rows=args.batch_rows, max_rows=args.max_rows)))
    elif args.command == "worker":
        print(run_async_command(worker()))
    elif args.command == "send-mail":
        migrate()
        print(run_async_command(send_mail(max_mails=args.max_mails)))
    elif args.command == "unlock":
        migrate()
        print(run_async_command(unlock(args.email)))
    elif args.command in ("backup", "restore"):
        run_backup_command(args)
    else:
        serve()


if __name__ == "__main__":
    main()
