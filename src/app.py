"""create_app(): the FastAPI application with its middleware, error handlers and routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

from src.auth.router import router as auth_router
from src.config import Settings, settings
from src.constants import API_PREFIX
from src.dashboard.router import router as dashboard_router
from src.database import engine
from src.dependencies import check_query_string
from src.docs import add_docs
from src.exceptions import register_exception_handlers
from src.health import router as health_router
from src.invitations.router import router as invitations_router
from src.logging import configure_logging
from src.mail.jobs import mail_sender_running
from src.middleware import RequestMiddleware
from src.page import add_page
from src.sampleFileUpload.jobs import imports_running
from src.sampleFileUpload.router import router as sample_file_router
from src.schemas import has_null_branch, without_null
from src.study.router import router as study_router

DESCRIPTION = """
Studybase keeps research studies, the samples in them and the sample files they come from.

Sign in with **Authorize** (email and password); every error is `application/problem+json`
with a stable `code`.
"""


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

API_ROUTERS = (
    health_router,
    auth_router,
    # Before the study routes: /studies/{id}/samples/export is not /studies/{id}/samples/{sample_pk}.
    sample_file_router,
    study_router,
    dashboard_router,
    invitations_router,
)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Each process sends what the outbox holds (src/mail/jobs.py); stopped before the engine goes.
    # Imports run by this process (IMPORT_RUNNER=process) end before the engine goes.
    async with mail_sender_running(), imports_running():
        yield
    await engine.dispose()


def add_middleware(app: FastAPI, config: Settings) -> None:
    app.add_middleware(
        RequestMiddleware, deadline_seconds=config.REQUEST_TIMEOUT_SECONDS, cors=cors_options(config)
    )


def cors_options(config: Settings) -> dict[str, Any] | None:
    """Starlette's CORS settings for the CORS_ORIGINS allowed, or None when none is."""
    if not config.CORS_ORIGINS:
        return None
    return {
        "allow_origins": config.CORS_ORIGINS,
        "allow_credentials": "*" not in config.CORS_ORIGINS,
        "allow_methods": ["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
        "allow_headers": [
            "Authorization",
            "Content-Type",
            "X-Request-ID",
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            "Prefer",
        ],
        "expose_headers": [
            "X-Request-ID",
            "Location",
            "Retry-After",
            "ETag",
            "Idempotent-Replayed",
            "Preference-Applied",
        ],
    }


def document_errors_as_problems(app: FastAPI) -> None:
    """Error responses are problem+json with the Problem schema, FastAPI's own 422 included."""
    schema = app.openapi()
    problem = {"$ref": "#/components/schemas/Problem"}
    for operation in (op for path in schema["paths"].values() for op in path.values()):
        for status, response in operation.get("responses", {}).items():
            if int(status) >= 400:
                documented = response.get("content", {}).get("application/json", {})
                examples = {"examples": documented["examples"]} if "examples" in documented else {}
                response["content"] = {"application/problem+json": {"schema": problem, **examples}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)


def document_parameters_without_null(app: FastAPI) -> None:
    """A header or query parameter has no null, only left out: the document offers its type alone
    (FastAPI's `anyOf` with null reads to a generated client as a `null` to send as text)."""
    operations = (op for path in app.openapi()["paths"].values() for op in path.values())
    for parameter in (parameter for operation in operations for parameter in operation.get("parameters", [])):
        if has_null_branch(parameter["schema"]):
            parameter["schema"] = without_null(parameter["schema"])


def operation_id(route: APIRoute) -> str:
    """The route's function name (`create_study`), what a generated client names its call; FastAPI's
    default adds the path and method (`create_study_api_v1_studies_post`)."""
    return route.name


def create_app(config: Settings = settings) -> FastAPI:
    configure_logging(config.LOG_LEVEL)
    app = FastAPI(
        title="Studybase API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # A redirect would be built from the client's Host header: `/me/` is a 404 problem instead.
        redirect_slashes=False,
        # Served by src/docs.py from pinned local assets; the OAuth2 redirect page only serves
        # flows we do not offer (the password flow needs none) and would need an inline script.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        generate_unique_id_function=operation_id,
        # Studybase exports no OpenTelemetry: FastAPI's native telemetry would only start if a
        # provider were configured in the process, but asking whether one is cost every request
        # ~2.6% of `/auth/me`'s CPU (issue 23's profile, py-spy).
        telemetry=NO_TELEMETRY,
    )
    add_middleware(app, config)
    register_exception_handlers(app)
    # Each module's router straight under the app, not inside one API router: FastAPI matches an
    # included router's routes once to know it matches and again to pick the route, at every level.
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(check_query_string)])
    add_docs(app)
    add_page(app)
    document_errors_as_problems(app)
    document_parameters_without_null(app)
    return app
