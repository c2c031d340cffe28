"""Client e-mail through an SMTP relay, always with STARTTLS and a verified certificate.

Plain text only (UTF-8), in the client's language, with a neutral subject (a lock screen or a
shared inbox shows it). The Message-ID carries the notification id, so a retry after a lost
answer is recognisable as the same message. Errors become codes (`smtp:550`,
`smtp:auth`, `smtp:unavailable`): aiosmtplib's exception texts can repeat the recipient's address.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiosmtplib

from services.notify.adapters.channels import ChannelError, ChannelRejected
from services.notify.domain.contact import Contact
from services.notify.domain.messages import email_subject


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str  # the From address, e.g. "Referral mesh <noreply@example.org>"
    username: str | None = None
    password: str | None = None  # read from a file (MESH_NOTIFY_SMTP_PASSWORD_FILE), never an env value
    ca_file: Path | None = None  # trust this CA (a private relay); otherwise the system's roots
    timeout: float = 30.0


def read_secret_file(path: Path) -> str:
    """A secret from a mounted file; only the first line counts (editors add a newline)."""
    value = Path(path).read_text(encoding="utf-8").splitlines()
    if not value or not value[0].strip():
        raise ValueError(f"{path} is empty")
    return value[0].strip()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context  # check_hostname and CERT_REQUIRED are the defaults: never switched off


class EmailChannel:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.context = tls_context(settings.ca_file)
        self.domain = settings.sender.rpartition("@")[2].strip(" >") or "localhost"

    def compose(self, contact: Contact, text: str, *, notification_id: str, language: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = contact.address
        message["Subject"] = email_subject(language)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = f"<{notification_id}@{self.domain}>"
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message.set_content(text, subtype="plain", charset="utf-8")
        message["Content-Language"] = language  # after set_content, which clears Content-* headers
        return message

    async def send(self, contact: Contact, text: str, *, notification_id: str, language: str, template: str) -> str:
        if contact.channel != "email":
            raise ChannelRejected("email:not_an_email_contact")
        message = self.compose(contact, text, notification_id=notification_id, language=language)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.settings.host,
                port=self.settings.port,
                start_tls=True,
                use_tls=False,
                tls_context=self.context,
                validate_certs=True,
                username=self.settings.username,
                password=self.settings.password,
                timeout=self.settings.timeout,
            )
        except aiosmtplib.SMTPAuthenticationError:
            raise ChannelError("smtp:auth") from None  # our credentials, not the message: try again later
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = sorted({response.code for response in error.recipients})
            raise _by_code(codes[0] if codes else 550) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _by_code(error.code) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError):
            raise ChannelError("smtp:unavailable") from None
        return "email:sent"


def _by_code(code: int) -> ChannelError:
    """5xx is a permanent refusal (RFC 5321); 4xx is "try again later"."""
    if 500 <= code < 600:
        return ChannelRejected(f"smtp:{code}")
    return ChannelError(f"smtp:{code}")
