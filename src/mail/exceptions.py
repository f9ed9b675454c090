"""Errors of the mail module."""

from src.exceptions import ServiceUnavailable
from src.mail.constants import ErrorCode


class MailNotConfigured(ServiceUnavailable):
    code = ErrorCode.MAIL_NOT_CONFIGURED
    detail = (
        "This server sends no mail (SMTP_URL is not set), so this cannot be done here; ask an administrator."
    )
