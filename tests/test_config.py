"""Settings: the secret is strong outside development, lists and levels are parsed, defaults are local."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from src.auth.config import AuthSettings
from src.config import MIN_SECRET_KEY_BYTES, SAMPLE_SECRET_KEY, Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def import_in_subprocess(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Imports a module in a fresh interpreter, as starting the app would, with the given environment."""
    return subprocess.run(  # noqa: S603 (our interpreter, a fixed module name)
        [sys.executable, "-c", f"import {module}"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_from(**values: object) -> Settings:
    """Settings from the given values and the environment only, never from a developer's `.env`."""
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_outside_development_the_sample_secret_is_refused(environment):
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings_from(ENVIRONMENT=environment, SECRET_KEY=SAMPLE_SECRET_KEY)


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_outside_development_a_short_secret_is_refused(environment):
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings_from(ENVIRONMENT=environment, SECRET_KEY="x" * (MIN_SECRET_KEY_BYTES - 1))


def test_production_refuses_the_default_when_no_secret_is_set(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)

    with pytest.raises(ValidationError, match="SECRET_KEY"):
        settings_from(ENVIRONMENT="production")


def shows_part_of(secret: str, text: str) -> bool:
    """Whether any 8 characters of the secret appear in the text (pydantic shortens what it echoes)."""
    return any(secret[start : start + 8] in text for start in range(len(secret) - 7))


def test_refused_secret_is_not_shown_in_the_error():
    weak_secret = "my-real-but-short-secret"

    with pytest.raises(ValidationError) as caught:
        settings_from(ENVIRONMENT="production", SECRET_KEY=weak_secret)

    assert "SECRET_KEY" in str(caught.value)
    assert not shows_part_of(weak_secret, str(caught.value))


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_and_test_accept_the_sample_secret(environment):
    config = settings_from(ENVIRONMENT=environment, SECRET_KEY=SAMPLE_SECRET_KEY)

    assert config.SECRET_KEY.get_secret_value() == SAMPLE_SECRET_KEY


def test_production_accepts_a_long_random_secret():
    secret = secrets.token_urlsafe(48)

    config = settings_from(ENVIRONMENT="production", SECRET_KEY=secret)

    assert config.ENVIRONMENT == "production"
    assert config.SECRET_KEY.get_secret_value() == secret


def test_production_accepts_a_secret_of_exactly_the_minimum_length():
    config = settings_from(ENVIRONMENT="production", SECRET_KEY="k" * MIN_SECRET_KEY_BYTES)

    assert len(config.SECRET_KEY.get_secret_value()) == MIN_SECRET_KEY_BYTES


def test_secret_is_hidden_in_the_settings_repr():
    config = settings_from(SECRET_KEY=SAMPLE_SECRET_KEY)

    assert SAMPLE_SECRET_KEY not in repr(config)


def test_unknown_environment_is_refused():
    with pytest.raises(ValidationError, match="ENVIRONMENT"):
        settings_from(ENVIRONMENT="prod")


def test_cors_origins_comma_separated_become_a_trimmed_list():
    config = settings_from(CORS_ORIGINS=" https://a.example , ,https://b.example,")

    assert config.CORS_ORIGINS == ["https://a.example", "https://b.example"]


def test_cors_origins_from_the_environment_are_split(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")

    assert settings_from().CORS_ORIGINS == ["https://a.example", "https://b.example"]


def test_empty_cors_origins_is_an_empty_list():
    assert settings_from(CORS_ORIGINS="").CORS_ORIGINS == []


def test_log_level_is_normalized_to_upper_case():
    assert settings_from(LOG_LEVEL="debug").LOG_LEVEL == "DEBUG"


def test_unknown_log_level_is_refused():
    with pytest.raises(ValidationError, match="LOG_LEVEL"):
        settings_from(LOG_LEVEL="LOUD")


def test_database_url_defaults_to_the_local_sqlite_file(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)

    config = settings_from()

    assert config.DATABASE_URL == "sqlite+aiosqlite:///./data/studybase.db"


@pytest.mark.parametrize(
    "name",
    [
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        "REFRESH_TOKEN_EXPIRE_DAYS",
        "LOGIN_MAX_FAILURES",
        "LOGIN_LOCKOUT_MINUTES",
        "LOGIN_ACCOUNT_MAX_FAILURES",
        "LOGIN_SLOWDOWN_SECONDS",
        "PASSWORD_HASH_CONCURRENCY",
    ],
)
def test_auth_durations_and_limits_must_be_positive(name):
    with pytest.raises(ValidationError, match=name):
        AuthSettings(_env_file=None, **{name: 0})


def test_settings_are_read_from_an_env_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=warning\n", encoding="utf-8")

    config = Settings(_env_file=env_file)

    assert config.LOG_LEVEL == "WARNING"


def test_app_refuses_to_start_in_production_with_the_sample_secret(tmp_path):
    env = os.environ | {
        "ENVIRONMENT": "production",
        "SECRET_KEY": SAMPLE_SECRET_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{(tmp_path / 'app.db').as_posix()}",
    }

    result = import_in_subprocess("src.app", env)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_app_refusing_to_start_does_not_print_the_weak_secret_or_database_password(tmp_path):
    weak_secret = "my-real-but-short-secret"
    env = os.environ | {
        "ENVIRONMENT": "production",
        "SECRET_KEY": weak_secret,
        "DATABASE_URL": "postgresql+psycopg://app:db-password-123@db.invalid:5432/studybase",
    }

    result = import_in_subprocess("src.config", env)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert not shows_part_of(weak_secret, result.stderr)
    assert "db-password-123" not in result.stderr
