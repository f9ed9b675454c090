"""How many workers and cores: gunicorn and the app's password-hashing limit read them alike."""

import runpy
from pathlib import Path

import pytest

from src import workers
from src.auth import service
from src.auth.config import AuthSettings, auth_settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def cores(monkeypatch):
    """`cores(16)`: pretend this process may run on that many cores."""

    def pretend(count: int) -> None:
        monkeypatch.setattr(workers, "usable_cores", lambda: count)

    return pretend


@pytest.mark.parametrize(
    ("usable", "web_concurrency", "per_worker"),
    [(16, "", 1), (16, "4", 4), (8, "3", 2), (2, "4", 1), (1, "", 1)],
)
def test_each_worker_gets_its_share_of_the_cores(cores, monkeypatch, usable, web_concurrency, per_worker):
    cores(usable)
    monkeypatch.setenv("WEB_CONCURRENCY", web_concurrency)

    assert workers.cores_per_worker() == per_worker


def test_password_hash_concurrency_defaults_to_the_workers_share(cores, monkeypatch):
    cores(16)
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    monkeypatch.delenv("PASSWORD_HASH_CONCURRENCY", raising=False)

    assert AuthSettings(_env_file=None).PASSWORD_HASH_CONCURRENCY == 4


def test_password_hash_concurrency_can_be_set(cores, monkeypatch):
    cores(16)
    monkeypatch.setenv("PASSWORD_HASH_CONCURRENCY", "3")

    assert AuthSettings(_env_file=None).PASSWORD_HASH_CONCURRENCY == 3


def test_gunicorn_starts_as_many_workers_as_the_app_divides_the_cores_by(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")

    config = runpy.run_path(str(PROJECT_DIR / "gunicorn.conf.py"))

    assert config["workers"] == workers.web_concurrency() == 3


def test_the_hashing_limiter_admits_the_configured_number_of_hashes():
    assert service._password_hashing.total_tokens == auth_settings.PASSWORD_HASH_CONCURRENCY
