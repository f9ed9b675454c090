"""Mail texts from the templates beside this file: plain text and HTML, from the same values.

`name.txt` starts with a `Subject:` line and a blank line, then the text; `name.html` is the HTML
body. Placeholders are string.Template's `$name`. Values are inserted as they are into the text
and escaped into the HTML, so nothing a user typed (a name, an address) can become markup there.
"""

import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from urllib.parse import quote

from src.mail.config import mail_settings

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SUBJECT_PREFIX = "Subject: "


@dataclass(frozen=True, slots=True)
class MailContent:
    subject: str
    text: str
    html: str


@cache
def _templates(name: str) -> tuple[Template, Template, Template]:
    head, _, text = (TEMPLATE_DIR / f"{name}.txt").read_text(encoding="utf-8").partition("\n\n")
    if not head.startswith(SUBJECT_PREFIX):
        raise ValueError(f"{name}.txt must start with a `{SUBJECT_PREFIX}` line and a blank line")
    page = (TEMPLATE_DIR / f"{name}.html").read_text(encoding="utf-8")
    return Template(head.removeprefix(SUBJECT_PREFIX)), Template(text), Template(page)


def render(name: str, /, **values: str) -> MailContent:
    """The mail `name` with `values` filled in; a placeholder without a value is an error."""
    subject, text, page = _templates(name)
    escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
    # A subject is one line: a value with a line break would start a header of its own.
    one_line = {key: " ".join(value.split()) for key, value in values.items()}
    return MailContent(
        subject=subject.substitute(one_line), text=text.substitute(values), html=page.substitute(escaped)
    )


def page_url(path: str) -> str:
    return f"{mail_settings.PUBLIC_URL}{path}"


def page_link(path: str, *, token: str) -> str:
    """A link to the page at `path` carrying `token` in the fragment: browsers never send a
    fragment to the server, so the token reaches no access log or proxy on the way."""
    return f"{page_url(path)}#token={quote(token, safe='')}"
