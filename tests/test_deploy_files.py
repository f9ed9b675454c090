"""The deployment files say what an operator needs: checked statically (no Docker engine here)."""

import os
import re
import runpy
import shutil
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import yaml

from scripts.local_stack import (
    COMPOSE_PAGE_ROOT,
    COMPOSE_UPSTREAM_ENTRY,
    COMPOSE_UPSTREAM_RESOLVER,
    UPSTREAM_ENTRIES,
    ConfigDrift,
    check_nginx_config,
    render_nginx_config,
    replace_once,
)
from src.middleware import API_CSP, DASHBOARD_CSP
from src.page import PAGE_DIR
from src.workers import usable_cores

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNDER_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (PROJECT_DIR / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


# docker-compose.yml


def test_every_depends_on_names_an_existing_service(services):
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"


def test_only_nginx_publishes_ports_outside_the_dev_profile(services):
    publishing = {name for name, service in services.items() if service.get("ports")}
    development = {name for name, service in services.items() if "dev" in service.get("profiles", [])}

    assert publishing - development == {"nginx"}
    for name in development & publishing:
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_mailpit_catches_mail_in_the_dev_profile_beside_the_database_not_with_it(compose, services):
    mailpit = services["mailpit"]

    assert mailpit["profiles"] == ["dev"]
    assert mailpit["image"].startswith("axllent/mailpit:v")
    assert mailpit["ports"] == ["127.0.0.1:8025:8025"]
    assert mailpit["networks"] == ["mail"]
    assert "mail" in services["api"]["networks"]
    assert compose["networks"]["mail"].get("internal") is not True  # the way out to a real SMTP server


def test_in_compose_the_workers_send_the_mail_and_have_the_way_out_to_smtp(compose, services):
    assert compose["x-api-environment"]["MAIL_SENDER"] == "${MAIL_SENDER:-queue}"
    assert services["worker"]["command"] == ["python", "main.py", "worker"]
    assert "mail" in services["worker"]["networks"]


def test_startup_order_is_db_then_migrate_then_api_then_nginx(services):
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["python", "main.py", "migrate"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert "/api/v1/health" in " ".join(services["api"]["healthcheck"]["test"])


# Variables of .env.sample that compose does not pass to the API, and why.
NOT_FOR_THE_API_CONTAINER = {
    "HOST": "python main.py only; in compose gunicorn binds GUNICORN_BIND",
    "PORT": "python main.py only",
    "ADMIN_PASSWORD": "read by `python main.py create-admin`, run by hand",
    "POSTGRES_USER": "the db service's; the API gets them inside DATABASE_URL",
    "POSTGRES_PASSWORD": "the db service's; the API gets them inside DATABASE_URL",
    "POSTGRES_DB": "the db service's; the API gets them inside DATABASE_URL",
    "HTTP_PORT": "the host port nginx publishes",
    "SERVER_NAMES": "nginx's",
    "GUNICORN_BIND": "fixed by compose's network",
    "FORWARDED_ALLOW_IPS": "fixed to nginx's address on compose's network",
    # Computed from the machine when unset: compose cannot pass "unset" through ${X:-default}.
    "PASSWORD_HASH_CONCURRENCY": "computed when unset; set it under the api service to override",
    "IMPORTS_PER_WORKER": "computed when unset; set it under the api service to override",
    "COMPOSE_PROFILES": "read by docker compose itself",
    "MINIO_ROOT_USER": "MinIO's administrator: minio and minio-init only, the api has its own account",
    "MINIO_ROOT_PASSWORD": "MinIO's administrator: minio and minio-init only, the api has its own account",
}


def test_every_setting_in_env_sample_reaches_the_api_container(services):
    listed = re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", (PROJECT_DIR / ".env.sample").read_text(), re.MULTILINE)
    passed = services["api"]["environment"]

    missing = [name for name in listed if name not in passed and name not in NOT_FOR_THE_API_CONTAINER]

    assert missing == [], "add these to docker-compose.yml's api environment, or say why not"


def test_the_s3_profile_adds_minio_on_the_internal_network_and_its_bucket_before_the_api(compose, services):
    minio, init, api = services["minio"], services["minio-init"], services["api"]

    assert minio["profiles"] == init["profiles"] == ["s3"]
    assert re.fullmatch(r"minio/minio:RELEASE\.[0-9TZ-]+", minio["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.[0-9TZ-]+", init["image"])
    assert minio["networks"] == init["networks"] == ["backend"]  # internal: no way in from outside
    assert "ports" not in minio
    assert minio["volumes"] == ["minio-data:/data"]
    assert "minio-data" in compose["volumes"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    assert api["depends_on"]["minio-init"] == {
        "condition": "service_completed_successfully",
        "required": False,
    }
    for name in ("STORAGE_URL", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert api["environment"][name] == f"${{{name}:-}}"  # empty: the default (files on `uploads`)
        assert services["prune"]["environment"][name] == api["environment"][name]
    assert "MINIO_ROOT_PASSWORD" not in api["environment"]  # the api gets its own account, not the admin's


def test_data_lives_on_named_volumes(compose, services):
    assert services["db"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert services["api"]["volumes"] == ["uploads:/app/data/uploads"]
    assert {"pgdata", "uploads"} <= set(compose["volumes"])


def test_database_and_api_sit_on_an_internal_network(compose, services):
    assert compose["networks"]["backend"]["internal"] is True
    assert services["db"]["networks"] == ["backend"]
    # ...and the api's way out to the SMTP server, a network the database is not on.
    assert list(services["api"]["networks"]) == ["backend", "mail"]
    assert set(services["nginx"]["networks"]) == {"frontend", "backend"}


def test_api_and_worker_scale_out_with_no_fixed_name_address_or_port(services):
    for name in ("api", "worker"):
        service = services[name]
        assert "container_name" not in service, name
        assert "ports" not in service, name
        assert "ipv4_address" not in str(service["networks"]), name
    assert services["nginx"]["depends_on"]["api"]["restart"] is True


def test_nginx_alone_has_a_fixed_address_and_no_replica_can_be_given_it(compose, services):
    fixed = [
        name
        for name, service in services.items()
        if isinstance(service.get("networks"), dict) and "ipv4_address" in str(service["networks"])
    ]
    [backend] = compose["networks"]["backend"]["ipam"]["config"]
    nginx_address = ip_address(services["nginx"]["networks"]["backend"]["ipv4_address"])

    assert fixed == ["nginx"]
    assert nginx_address in ip_network(backend["subnet"])
    # Docker hands the other containers addresses from ip_range only.
    assert ip_network(backend["ip_range"]).subnet_of(ip_network(backend["subnet"]))
    assert nginx_address not in ip_network(backend["ip_range"])


def test_api_gets_longer_to_stop_than_gunicorns_graceful_timeout(services, monkeypatch):
    grace = services["api"]["stop_grace_period"]

    assert grace.endswith("s")
    assert int(grace[:-1]) > load_gunicorn_config(monkeypatch)["graceful_timeout"]


def test_db_readiness_is_checked_over_tcp(services):
    assert "pg_isready -h 127.0.0.1" in " ".join(services["db"]["healthcheck"]["test"])


def test_api_trusts_forwarded_headers_only_from_nginx(services):
    nginx_address = services["nginx"]["networks"]["backend"]["ipv4_address"]

    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == nginx_address


def test_secrets_come_from_env_and_are_required(services):
    environment = services["api"]["environment"]

    assert environment["ENVIRONMENT"] == "production"
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    assert "@db:5432/" in environment["DATABASE_URL"]


def test_every_long_running_service_restarts(services):
    for name in ("db", "api", "nginx"):
        assert services[name]["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"


def test_nginx_uses_the_committed_config_files(services):
    mounts = services["nginx"]["volumes"]

    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts
    assert "./nginx/default.conf:/etc/nginx/templates/default.conf.template:ro" in mounts


def test_images_are_pinned(services):
    for name in ("db", "nginx"):
        assert re.search(r":\d+\.\d+(\.\d+)?-", services[name]["image"]), services[name]["image"]


# Dockerfile


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python():
    instructions = dockerfile_instructions()
    base = next(
        value for keyword, value in instructions if keyword == "ARG" and value.startswith("PYTHON_IMAGE=")
    )

    assert sum(keyword == "FROM" for keyword, _ in instructions) >= 2
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-\w+", base)


def test_api_image_runs_as_a_non_root_user():
    users = [value for keyword, value in final_stage(dockerfile_instructions()) if keyword == "USER"]

    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_api_image_starts_gunicorn_in_exec_form_with_the_config():
    command = [value for keyword, value in final_stage(dockerfile_instructions()) if keyword == "CMD"][-1]

    assert command == '["gunicorn", "--config", "gunicorn.conf.py"]'


def test_api_image_has_a_python_healthcheck_and_no_build_tools():
    stage = final_stage(dockerfile_instructions())
    healthcheck = next(value for keyword, value in stage if keyword == "HEALTHCHECK")
    runs = " ".join(value for keyword, value in stage if keyword == "RUN")

    assert '"python"' in healthcheck
    assert "/api/v1/health" in healthcheck
    assert not re.search(r"apt-get|gcc|build-essential", runs)


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = (PROJECT_DIR / ".dockerignore").read_text(encoding="utf-8").splitlines()

    assert ignored[ignored.index("*")] == "*"
    allowed = {line[1:] for line in ignored if line.startswith("!")}
    assert allowed == {
        "requirements.txt",
        "main.py",
        "alembic.ini",
        "gunicorn.conf.py",
        "src/",
        "nginx/html/",
    }


def test_api_image_holds_the_dashboard_page_the_app_serves():
    copies = [value for keyword, value in final_stage(dockerfile_instructions()) if keyword == "COPY"]

    assert f"nginx/html ./{PAGE_DIR.relative_to(PROJECT_DIR).as_posix()}" in copies


# gunicorn.conf.py


def load_gunicorn_config(monkeypatch, **env: str) -> dict:
    for name in (
        "WEB_CONCURRENCY",
        "FORWARDED_ALLOW_IPS",
        "GUNICORN_BIND",
        "GUNICORN_TIMEOUT",
        "GUNICORN_MAX_REQUESTS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(PROJECT_DIR / "gunicorn.conf.py"))


def test_gunicorn_runs_the_app_factory_on_uvicorn_workers(monkeypatch):
    config = load_gunicorn_config(monkeypatch)

    assert config["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert config["wsgi_app"] == "src.app:create_app()"
    assert config["control_socket_disable"] is True
    assert config["timeout"] > 0
    assert config["graceful_timeout"] > 0


def test_gunicorn_recycles_workers_only_when_asked_and_then_staggered(monkeypatch):
    # Load must never drive recycling: a fixed count of 2,000 restarted workers every ~2 s under load.
    assert load_gunicorn_config(monkeypatch)["max_requests"] == 0
    config = load_gunicorn_config(monkeypatch, GUNICORN_MAX_REQUESTS="5000000")
    assert config["max_requests"] == 5_000_000
    assert 0 < config["max_requests_jitter"] < config["max_requests"]


def test_gunicorn_workers_default_to_the_cores_and_follow_web_concurrency(monkeypatch):
    config = load_gunicorn_config(monkeypatch)
    assert config["workers"] == usable_cores() >= 1
    assert load_gunicorn_config(monkeypatch, WEB_CONCURRENCY="3")["workers"] == 3


def test_gunicorn_trusts_forwarded_headers_only_from_the_configured_proxy(monkeypatch):
    assert load_gunicorn_config(monkeypatch)["forwarded_allow_ips"] == "127.0.0.1"
    configured = load_gunicorn_config(monkeypatch, FORWARDED_ALLOW_IPS="172.28.10.10")
    assert configured["forwarded_allow_ips"] == "172.28.10.10"


def test_gunicorn_logs_json(monkeypatch):
    config = load_gunicorn_config(monkeypatch)

    assert config["accesslog"] is None
    assert config["logconfig_dict"]["formatters"]["json"]["()"].__name__ == "JsonFormatter"


# nginx


def test_rendering_refuses_a_config_that_drifted():
    with pytest.raises(ConfigDrift):
        replace_once("listen 80 default_server;", "server api:8000;", "x", source="default.conf")


def test_rendered_nginx_config_changes_only_addresses_and_paths(tmp_path):
    config = render_nginx_config(tmp_path / "nginx", listen="127.0.0.1:18080", upstream="127.0.0.1:18000")

    server = (tmp_path / "nginx" / "default.conf").read_text(encoding="utf-8")
    committed = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    assert server == committed.replace(
        "server api:8000 resolve max_fails=0;", "server 127.0.0.1:18000 max_fails=0;"
    ).replace(COMPOSE_UPSTREAM_RESOLVER, "").replace("listen 80", "listen 127.0.0.1:18080").replace(
        "${MAX_UPLOAD_MB}", "100"
    ).replace("${SERVER_NAMES}", "localhost 127.0.0.1").replace(
        f"root {COMPOSE_PAGE_ROOT};", f"root {tmp_path / 'nginx' / 'html'};"
    )
    for page_file in PAGE_DIR.rglob("*.*"):
        copied = tmp_path / "nginx" / "html" / page_file.relative_to(PAGE_DIR)
        assert copied.read_bytes() == page_file.read_bytes()
    assert "include /etc/nginx/conf.d" not in config.read_text(encoding="utf-8")
    for name in ("problem-pages.conf", "trusted-clients.conf"):
        copied = (tmp_path / "nginx" / "studybase" / name).read_text(encoding="utf-8")
        assert copied == (PROJECT_DIR / "nginx" / "studybase" / name).read_text(encoding="utf-8")


def upstream_block(server: str) -> str:
    return server.split("upstream studybase_api {", 1)[1].split("\n}", 1)[0]


def directives(block: str) -> list[str]:
    """The block's directives, one a line, without comments."""
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_nginx_finds_every_api_replica_by_name_and_follows_them(services):
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    upstream = directives(upstream_block(server))
    version = re.match(r"nginx:(\d+)\.(\d+)\.(\d+)-", services["nginx"]["image"])

    # `resolve` in an upstream (open-source nginx 1.27.3 and later) needs the shared zone and a
    # resolver: Docker's own DNS, asked again within seconds rather than its answers' 600 s TTL.
    assert tuple(int(part) for part in version.groups()) >= (1, 27, 3)
    assert re.fullmatch(r"zone studybase_api_hosts \d+k;", upstream[0])
    resolver = re.fullmatch(r"resolver 127\.0\.0\.11 valid=(\d+)s ipv6=off;", upstream[1])
    assert resolver is not None
    assert int(resolver.group(1)) <= 10
    assert COMPOSE_UPSTREAM_RESOLVER.strip() == upstream[1]
    # Listed several times, so that proxy_next_upstream has a next server to retry a GET on.
    assert upstream[2 : 2 + UPSTREAM_ENTRIES] == [COMPOSE_UPSTREAM_ENTRY.strip()] * UPSTREAM_ENTRIES
    assert upstream[2 + UPSTREAM_ENTRIES :] == ["keepalive 32;", "keepalive_timeout 60s;"]
    assert "proxy_next_upstream error;" in server
    # One host down holds every entry's address of it: one more try always reaches another host.
    assert f"proxy_next_upstream_tries {UPSTREAM_ENTRIES + 1};" in server


def test_a_local_copy_lists_every_host_in_each_entry_for_an_nginx_without_resolve(tmp_path):
    config = render_nginx_config(
        tmp_path / "nginx", listen="127.0.0.1:18080", upstream=["127.0.0.1:18000", "127.0.0.1:18001"]
    )

    upstream = directives(upstream_block((tmp_path / "nginx" / "default.conf").read_text(encoding="utf-8")))
    assert upstream == [
        "zone studybase_api_hosts 256k;",
        *["server 127.0.0.1:18000 max_fails=0;", "server 127.0.0.1:18001 max_fails=0;"] * UPSTREAM_ENTRIES,
        "keepalive 32;",
        "keepalive_timeout 60s;",
    ]
    assert config.exists()
    with pytest.raises(ValueError, match="at least one address"):
        render_nginx_config(tmp_path / "none", listen="127.0.0.1:18080", upstream=[])


def geo_entries(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_no_client_is_trusted_unless_the_rendering_is_told(tmp_path):
    committed = (PROJECT_DIR / "nginx" / "studybase" / "trusted-clients.conf").read_text(encoding="utf-8")
    render_nginx_config(
        tmp_path / "nginx",
        listen="127.0.0.1:18080",
        upstream="127.0.0.1:18000",
        trusted_clients=["127.0.0.1"],
    )

    rendered = (tmp_path / "nginx" / "studybase" / "trusted-clients.conf").read_text(encoding="utf-8")
    assert geo_entries(committed) == []
    assert geo_entries(rendered) == ["127.0.0.1 1;"]


@pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists() and not UNDER_CI,
    reason="nginx is not installed (CI installs it)",
)
@pytest.mark.parametrize("upstream", ["127.0.0.1:18000", ["127.0.0.1:18000", "127.0.0.1:18001"]])
def test_nginx_accepts_the_committed_config(tmp_path, upstream):
    config = render_nginx_config(tmp_path / "nginx", listen="127.0.0.1:18080", upstream=upstream)

    checked = check_nginx_config(config)

    assert checked.returncode == 0, checked.stderr


def test_token_endpoints_are_never_gzipped():
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")

    block = server.split("location ~* ^/api/v1/auth/(token|refresh) {", 1)[1].split("}", 1)[0]

    assert "gzip off;" in block


def test_every_request_falls_under_both_rate_limits_outside_any_location():
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    shared = server.split("\nserver {", 1)[0]
    main = (PROJECT_DIR / "nginx" / "nginx.conf").read_text(encoding="utf-8")

    assert "limit_req zone=studybase_auth" in shared
    assert "limit_req zone=studybase_api" in shared
    assert "limit_conn studybase_conn" in shared
    assert "limit_req " not in server.split("\nserver {", 1)[1]  # no location replaces them
    assert '"~*^/api/v1/auth/(token|refresh|register|me/password|password-reset|verify-email)" 1;' in main


def test_every_error_nginx_makes_has_a_problem_page():
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    pages = (PROJECT_DIR / "nginx" / "studybase" / "problem-pages.conf").read_text(encoding="utf-8")

    targets = dict(re.findall(r"^error_page ([\d ]+) = (\S+);$", server, re.MULTILINE))
    statuses = {status for listed in targets for status in listed.split()}
    assert {"400", "404", "405", "413", "414", "421", "429", "494", "500", "502", "503", "504"} <= statuses
    for target in targets.values():
        opened = pages.split(f"location {'= ' if target.startswith('/') else ''}{target} {{", 1)[1]
        page = re.split(r"\n\s*\}", opened, maxsplit=1)[0]  # `types { }` is inside, on one line
        if not target.startswith("/_studybase_problem/"):
            # The request's URI is kept: without `types { }` its extension (.js) would set the type.
            assert "types { }\n    default_type application/problem+json;" in page
        assert re.search(r"return \d{3} '\{\"type\":\"urn:studybase:problem:", page)
    assert server.count("include studybase/problem-pages.conf;") == server.count("\nserver {")


def test_compose_fills_in_every_placeholder_of_the_nginx_template(services):
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    nginx = services["nginx"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", server))

    assert placeholders == {"MAX_UPLOAD_MB", "SERVER_NAMES"}
    for name in placeholders:
        assert name in nginx["environment"]
        assert re.fullmatch(nginx["environment"]["NGINX_ENVSUBST_FILTER"].replace("$$", "$"), name)
    assert "./nginx/studybase:/etc/nginx/studybase:ro" in nginx["volumes"]


def test_nginx_serves_the_dashboard_page_from_the_mounted_folder(services):
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")

    assert f"./nginx/html:{COMPOSE_PAGE_ROOT}:ro" in services["nginx"]["volumes"]
    assert server.count(f"root {COMPOSE_PAGE_ROOT};") == 1


def test_nginx_gives_the_page_the_same_csp_as_the_app():
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")

    assert f'"{DASHBOARD_CSP}";' in server
    assert f'"{API_CSP}";' in server


def test_env_sample_lists_the_nginx_settings():
    sample = (PROJECT_DIR / ".env.sample").read_text(encoding="utf-8")

    for name in ("MAX_UPLOAD_MB", "SERVER_NAMES"):
        assert re.search(rf"^{name}=", sample, re.MULTILINE)


def test_the_api_is_given_exactly_the_request_headers_nginx_checks():
    server = (PROJECT_DIR / "nginx" / "default.conf").read_text(encoding="utf-8")
    checked_key = re.search(
        r'^map "\$studybase_own_uri:([^"]+)" \$studybase_control_in_headers', server, re.M
    )
    checked = set(re.findall(r"\$http_(\w+)", checked_key.group(1)))
    passed = {
        name.lower().replace("-", "_")
        for name, variable in re.findall(r"^proxy_set_header ([\w-]+) \$http_(\w+);$", server, re.M)
        if name.lower().replace("-", "_") == variable
    }

    assert "proxy_pass_request_headers off;" in server
    assert passed == checked
    assert {
        "authorization",
        "content_type",
        "user_agent",
        "origin",
        "access_control_request_method",
    } <= passed


def cors_entries(path: Path) -> list[str]:
    return geo_entries(path.read_text(encoding="utf-8"))


def test_nginx_allows_the_apis_cors_origins_and_no_other(tmp_path):
    render_nginx_config(tmp_path / "none", listen="127.0.0.1:18080", upstream="127.0.0.1:18000")
    render_nginx_config(
        tmp_path / "some",
        listen="127.0.0.1:18080",
        upstream="127.0.0.1:18000",
        cors_origins=[" https://app.example.org", "http://localhost:5173 "],
    )

    assert cors_entries(tmp_path / "none" / "cors-origins.conf") == []
    assert cors_entries(tmp_path / "some" / "cors-origins.conf") == [
        '"https://app.example.org" $http_origin;',
        '"http://localhost:5173" $http_origin;',
    ]


@pytest.mark.parametrize(
    "origin", ['https://a.example";default 1', "app.example.org", "https://a.example/path"]
)
def test_an_origin_that_could_change_the_nginx_config_is_refused(tmp_path, origin):
    with pytest.raises(ValueError, match="not an origin"):
        render_nginx_config(
            tmp_path / "nginx", listen="127.0.0.1:18080", upstream="127.0.0.1:18000", cors_origins=[origin]
        )


def test_compose_gives_nginx_the_apis_cors_origins(services):
    nginx, api = services["nginx"], services["api"]

    assert nginx["environment"]["CORS_ORIGINS"] == api["environment"]["CORS_ORIGINS"]
    assert "./nginx/cors-origins.sh:/docker-entrypoint.d/40-studybase-cors-origins.sh:ro" in nginx["volumes"]
    assert os.access(PROJECT_DIR / "nginx" / "cors-origins.sh", os.X_OK)  # the image runs only executables


def test_compose_has_a_one_shot_prune_job_that_up_does_not_start(services):
    prune = services["prune"]

    assert prune["command"] == ["python", "main.py", "prune"]
    assert prune["profiles"] == ["maintenance"]
    assert prune["restart"] == "no"
    assert prune["volumes"] == services["api"]["volumes"]  # it sweeps UPLOAD_DIR too
    assert prune["environment"]["DATABASE_URL"] == services["api"]["environment"]["DATABASE_URL"]
