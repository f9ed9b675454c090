"""CI's client check: clients generated from the API's OpenAPI document cover every route and work.

    python -m scripts.check_clients [--keep DIR]

1. Dumps the app's document (`create_app().openapi()`, no server needed).
2. Python: generates a client with `openapi-python-client generate --fail-on-warning` (requirements.ci.txt),
   checks it has a call for every operation, starts the app (`python main.py` on a free loopback port,
   on a throwaway SQLite database) and runs clients/python/flow.py with the generated code against it.
3. TypeScript: installs clients/typescript's pinned packages (`npm ci`), generates the types with
   openapi-typescript, checks they have every operation, and type-checks clients/typescript/usage.ts
   with `tsc --noEmit`.

Any warning or error of a generator, a type error, or a step of the flow answered otherwise than the
document says, fails the check (exit status 1). Needs Node.js and npm on PATH.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from scripts.local_stack import PROJECT_DIR, free_port, stop, wait_until_answering

PYTHON_PACKAGE = "studybase_api_client"
PYTHON_FLOW = PROJECT_DIR / "clients" / "python" / "flow.py"
TYPESCRIPT_DIR = PROJECT_DIR / "clients" / "typescript"
TYPESCRIPT_TYPES = TYPESCRIPT_DIR / "generated" / "studybase.d.ts"
SERVER_START_SECONDS = 60.0
FLOW_SECONDS = 300


class ClientCheckFailed(Exception):
    """A generator warned or failed, a route has no call, or a generated client did not work."""


def dump_document(target: Path) -> dict:
    from src.app import create_app

    document = create_app().openapi()
    target.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return document


def operation_ids(document: dict) -> list[str]:
    return [operation["operationId"] for path in document["paths"].values() for operation in path.values()]


def missing_calls(document: dict, has_call: Callable[[str], bool]) -> list[str]:
    return [name for name in operation_ids(document) if not has_call(name)]


def run(step: str, command: Sequence[str | Path], *, cwd: Path = PROJECT_DIR, **options) -> tuple[str, str]:
    """Runs a tool: its stdout and stderr when it succeeds, else ClientCheckFailed with both."""
    print(f"--- {step}", flush=True)
    done = subprocess.run(  # noqa: S603 (argv built here)
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False, **options
    )
    if done.returncode != 0:
        raise ClientCheckFailed(f"{step} failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout, done.stderr


def generate_python_client(document_path: Path, document: dict, target: Path) -> None:
    package = target / PYTHON_PACKAGE
    generate = ["generate", "--path", document_path, "--output-path", package, "--meta", "none"]
    output = "".join(
        run(
            "openapi-python-client generate --fail-on-warning",
            [sys.executable, "-m", "openapi_python_client", *generate, "--fail-on-warning"],
        )
    )
    if "warning" in output.lower():  # --fail-on-warning exits 1 on them; this keeps it so
        raise ClientCheckFailed(f"openapi-python-client warned:\n{output}")
    missing = missing_calls(document, lambda name: any(package.glob(f"api/*/{name}.py")))
    if missing:
        raise ClientCheckFailed(f"the Python client has no call for: {', '.join(missing)}")


def server_environment(work: Path, port: int) -> dict[str, str]:
    return os.environ | {
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'studybase.db'}",
        "UPLOAD_DIR": str(work / "uploads"),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "CORS_ORIGINS": "",
    }


def run_python_flow(work: Path) -> None:
    """`python main.py` on a free port and a throwaway SQLite database; the flow against it."""
    port = free_port()
    log = work / "server.log"
    with log.open("wb") as server_output:  # the child keeps its own copy
        server = subprocess.Popen(
            [sys.executable, "main.py"],
            cwd=PROJECT_DIR,
            env=server_environment(work, port),
            stdout=server_output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches all of it
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base_url}/api/v1/health", process=server, timeout=SERVER_START_SECONDS)
        flow = [sys.executable, PYTHON_FLOW, base_url]
        flow_env = os.environ | {"PYTHONPATH": str(work / "python")}
        steps, _ = run("the generated Python client's flow", flow, env=flow_env, timeout=FLOW_SECONDS)
        print(steps, end="")
    except (ClientCheckFailed, RuntimeError, TimeoutError, subprocess.TimeoutExpired) as error:
        server_log = log.read_text(errors="replace")[-4000:]
        raise ClientCheckFailed(f"{error}\nThe app's log (its end):\n{server_log}") from None
    finally:
        stop(server, timeout=10)


def check_typescript_types(document_path: Path, document: dict) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ClientCheckFailed("npm is not on PATH: the TypeScript check needs Node.js and npm")
    run("npm ci (clients/typescript)", [npm, "ci", "--no-audit", "--no-fund"], cwd=TYPESCRIPT_DIR)
    tools = TYPESCRIPT_DIR / "node_modules" / ".bin"
    TYPESCRIPT_TYPES.parent.mkdir(exist_ok=True)
    # Without --default-non-nullable false a request body's key with a default would be required.
    generate = [document_path, "--output", TYPESCRIPT_TYPES, "--default-non-nullable", "false"]
    _, warnings = run("openapi-typescript", [tools / "openapi-typescript", *generate], cwd=TYPESCRIPT_DIR)
    if warnings.strip():  # it prints its warnings (and only them) on stderr, and still exits 0
        raise ClientCheckFailed(f"openapi-typescript warned:\n{warnings}")
    types = TYPESCRIPT_TYPES.read_text(encoding="utf-8")
    operations = types[types.index("export interface operations {") :]
    missing = missing_calls(document, lambda name: f"\n    {name}: {{" in operations)
    if missing:
        raise ClientCheckFailed(f"the TypeScript types have no operation for: {', '.join(missing)}")
    run("tsc --noEmit (clients/typescript/usage.ts)", [tools / "tsc", "--noEmit", "-p", TYPESCRIPT_DIR])


def check_clients(work: Path) -> None:
    document_path = work / "openapi.json"
    document = dump_document(document_path)
    print(f"{len(operation_ids(document))} operations in the document")
    generate_python_client(document_path, document, work / "python")
    run_python_flow(work)
    check_typescript_types(document_path, document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary)")
    args = parser.parse_args()
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            check_clients(args.keep.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="studybase-clients-") as work:
                check_clients(Path(work))
    except ClientCheckFailed as failure:
        sys.exit(f"Client check failed: {failure}")
    print("Generated clients: Python and TypeScript cover every route; no warning, the flow passed.")


if __name__ == "__main__":
    main()
