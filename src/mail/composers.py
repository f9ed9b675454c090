"""Which composer writes each kind of mail: the modules that queue a kind also compose it."""

from collections.abc import Mapping

from src.auth import mails as auth_mails
from src.invitations import mails as invitation_mails
from src.mail.constants import MailKind
from src.mail.service import Composer

COMPOSERS: Mapping[str, Composer] = {
    MailKind.PASSWORD_RESET: auth_mails.compose_password_reset,
    MailKind.PASSWORD_CHANGED: auth_mails.compose_password_changed,
    MailKind.INVITATION: invitation_mails.compose_invitation,
    MailKind.EMAIL_VERIFICATION: auth_mails.compose_email_verification,
    MailKind.REGISTRATION_ATTEMPT: auth_mails.compose_registration_attempt,
    MailKind.REGISTRATION_LINK: auth_mails.compose_registration_link,
}
