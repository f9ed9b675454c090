"""Mail settings are checked at start, and mail texts keep what users typed out of the markup."""

import re

import pytest
from pydantic import ValidationError

from src.constants import Environment
from src.mail.config import DEFAULT_PUBLIC_URL, MailSettings
from src.mail.templates import page_link, render


def settings(**values) -> MailSettings:
    return MailSettings(_env_file=None, **values)


def test_defaults_write_mail_to_the_log_in_development_and_test():
    for environment in (Environment.DEVELOPMENT, Environment.TEST):
        assert settings(ENVIRONMENT=environment).sends_mail is True
    for environment in (Environment.STAGING, Environment.PRODUCTION):
        assert settings(ENVIRONMENT=environment).sends_mail is False
        assert settings(
            ENVIRONMENT=environment, SMTP_URL="smtp://h.example", PUBLIC_URL="https://s.example"
        ).sends_mail


def test_an_empty_smtp_url_is_no_smtp_url():
    assert settings(SMTP_URL="").SMTP_URL is None


def test_a_refused_smtp_url_does_not_show_its_password():
    with pytest.raises(ValidationError) as refused:
        settings(SMTP_URL="ftp://user:hunter2-secret@h.example")

    assert "hunter2-secret" not in str(refused.value)
    assert "smtp://" in str(refused.value)


def test_mail_that_leaves_the_machine_needs_a_public_url():
    with pytest.raises(ValidationError, match="PUBLIC_URL must be set"):
        settings(ENVIRONMENT=Environment.PRODUCTION, SMTP_URL="smtp://h.example")
    assert (
        settings(ENVIRONMENT=Environment.DEVELOPMENT, SMTP_URL="smtp://h.example").PUBLIC_URL
        == DEFAULT_PUBLIC_URL
    )


@pytest.mark.parametrize(
    "url", ["ftp://s.example", "https://", "https://s.example/?a=1", "https://s.example/#x"]
)
def test_a_public_url_must_be_a_plain_web_address(url):
    with pytest.raises(ValidationError, match="PUBLIC_URL"):
        settings(PUBLIC_URL=url)


def test_a_public_url_loses_its_trailing_slash():
    assert settings(PUBLIC_URL="https://s.example/app/").PUBLIC_URL == "https://s.example/app"


@pytest.mark.parametrize("sender", ["Studybase", "not an address", ""])
def test_mail_from_must_be_an_address(sender):
    with pytest.raises(ValidationError, match="MAIL_FROM"):
        settings(MAIL_FROM=sender)


# Templates


def test_user_text_is_escaped_in_html_and_kept_in_plain_text():
    values = {
        "full_name": "<script>alert('x')</script> & co",
        "email": 'a"b@example.org',
        "changed_at": "2026-12-07 10:00",
        "reset_page": "https://s.example/reset-password?x=1&y=2",
    }

    mail = render("password_changed", **values)

    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in mail.html
    assert 'href="https://s.example/reset-password?x=1&amp;y=2"' in mail.html
    assert values["full_name"] in mail.text


def test_a_subject_stays_one_line_whatever_a_value_holds(tmp_path, monkeypatch):
    from src.mail import templates

    (tmp_path / "greeting.txt").write_text("Subject: Hello $name\n\nHi $name\n", encoding="utf-8")
    (tmp_path / "greeting.html").write_text("<p>Hi $name</p>", encoding="utf-8")
    monkeypatch.setattr(templates, "TEMPLATE_DIR", tmp_path)
    templates._templates.cache_clear()
    try:
        mail = render("greeting", name="Ada\r\nBcc: evil@example.org")
    finally:
        templates._templates.cache_clear()

    assert mail.subject == "Hello Ada Bcc: evil@example.org"
    assert "\n" not in mail.subject


def test_a_template_without_its_subject_line_is_refused(tmp_path, monkeypatch):
    from src.mail import templates

    (tmp_path / "bare.txt").write_text("Hi\n\nthere\n", encoding="utf-8")
    (tmp_path / "bare.html").write_text("<p>Hi</p>", encoding="utf-8")
    monkeypatch.setattr(templates, "TEMPLATE_DIR", tmp_path)
    templates._templates.cache_clear()
    try:
        with pytest.raises(ValueError, match="Subject"):
            render("bare")
    finally:
        templates._templates.cache_clear()


def test_a_missing_value_is_an_error_not_a_hole_in_the_mail():
    with pytest.raises(KeyError):
        render("password_changed", full_name="Ada")


def test_a_link_carries_its_token_in_the_fragment_only():
    link = page_link("/reset-password", token="abc-_123")

    assert link.endswith("/reset-password#token=abc-_123")
    assert "?" not in link


def test_every_mail_and_reset_setting_is_listed_in_env_sample():
    from pathlib import Path

    from src.auth.config import AuthSettings

    sample = (Path(__file__).resolve().parents[2] / ".env.sample").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", sample, re.MULTILINE))
    wanted = set(MailSettings.model_fields) | {
        name for name in AuthSettings.model_fields if name.startswith("PASSWORD_RESET_")
    }

    assert wanted - listed == set()
