"""Client e-mail against a real SMTP server (aiosmtpd) that requires STARTTLS and a login: the
message arrives in the client's language, plain text, with the right headers, only over a
verified TLS connection, and no personal data reaches the logs, metrics or the event."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from meshcli import pki
from meshcli.supervisor import free_port
from services.notify.adapters.channel_setup import client_channels
from services.notify.adapters.channels_email import EmailChannel, SmtpSettings
from services.notify.domain.contact import Contact
from services.notify.domain.messages import EMAIL_SUBJECTS
from tests.conftest import settings_from
from tests.integration.notify.client_channel_kit import (
    EMAIL_ADDRESS,
    assert_no_personal_data,
    client_case,
    dispatcher,
    drain,
    metrics_text,
    record_client_notification,
)

SMTP_USER = "mesh-notify"
SMTP_PASSWORD = "relay-password-for-tests"
SENDER = "Meldpunt <noreply@mesh.example.org>"


class Mailbox:
    def __init__(self):
        self.messages: list[tuple[str, list[str], email.message.EmailMessage, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        tls = session.ssl is not None
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed, tls))
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(tmp_path):
    ca_cert, ca_key = pki.make_ca("Test SMTP CA", "Tests")
    cert, key = pki.issue_server(ca_cert, ca_key, names=("127.0.0.1", "localhost"))
    pki.write_cert(tmp_path / "ca.crt", ca_cert)
    pki.write_cert(tmp_path / "smtp.crt", cert)
    pki.write_key(tmp_path / "smtp.key", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "smtp.crt", tmp_path / "smtp.key")
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        authenticator=_authenticate,
    )
    controller.start()
    yield mailbox, port, tmp_path / "ca.crt"
    controller.stop()


def _channel(port: int, ca_file: Path | None) -> EmailChannel:
    return EmailChannel(
        SmtpSettings(
            host="127.0.0.1", port=port, sender=SENDER, username=SMTP_USER, password=SMTP_PASSWORD, ca_file=ca_file
        )
    )


async def test_the_message_arrives_over_starttls_in_the_clients_language_as_plain_text(tmp_path, smtp_server, caplog):
    mailbox, port, ca_file = smtp_server
    (tmp_path / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    config = settings_from(
        {
            "MESH_NOTIFY_SMTP_HOST": "127.0.0.1",
            "MESH_NOTIFY_SMTP_PORT": str(port),
            "MESH_NOTIFY_SMTP_SENDER": SENDER,
            "MESH_NOTIFY_SMTP_USERNAME": SMTP_USER,
            "MESH_NOTIFY_SMTP_PASSWORD_FILE": str(tmp_path / "smtp-password"),
            "MESH_NOTIFY_SMTP_CA_FILE": str(ca_file),
        }
    )
    channels = client_channels(config, tmp_path / "outbox.jsonl")  # as the service builds them
    sender = dispatcher(tmp_path, channels.router)
    case_id = client_case(sender, Contact("email", EMAIL_ADDRESS), languages=("es",))
    notification_id = record_client_notification(sender, case_id, language="es")
    caplog.set_level(logging.DEBUG)

    assert await drain(sender, notification_id) == "delivered"

    [(mail_from, recipients, message, over_tls)] = mailbox.messages
    assert over_tls
    assert mail_from == "noreply@mesh.example.org" and recipients == [EMAIL_ADDRESS]
    assert message["To"] == EMAIL_ADDRESS and message["From"] == SENDER
    assert message["Subject"] == EMAIL_SUBJECTS["es"]
    assert message["Content-Language"] == "es"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == f"<{notification_id}@mesh.example.org>"
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    assert not message.is_multipart()
    body = message.get_content()
    assert "Huis aan de Haven" in body and "Den Haag" in body and "Meldpunt" in body
    assert "ayuda" in body  # Spanish text
    assert not (tmp_path / "outbox.jsonl").exists()  # e-mail went by e-mail, not to the outbox

    outcome = sender.outcomes.get(notification_id)
    assert (outcome.medium, outcome.state) == ("email", "sent")
    assert sender.store.delivery(notification_id).last_result == "email:sent"
    ours = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records if not r.name.startswith("mail"))
    assert_no_personal_data(ours, metrics_text(), sender.store.delivery(notification_id).envelope.decode("latin-1"))
    assert 'referralmesh_channel="email",referralmesh_outcome="sent"' in metrics_text()


async def test_a_relay_whose_certificate_is_not_trusted_gets_nothing(tmp_path, smtp_server, caplog):
    mailbox, port, _ca_file = smtp_server
    sender = dispatcher(tmp_path, _router(_channel(port, ca_file=None)), max_attempts=2)  # system roots only
    case_id = client_case(sender, Contact("email", EMAIL_ADDRESS))
    notification_id = record_client_notification(sender, case_id)
    caplog.set_level(logging.DEBUG)

    assert await drain(sender, notification_id) == "dead"
    assert mailbox.messages == []
    assert [a["result"] for a in sender.store.attempts(notification_id)] == ["channel:smtp:unavailable"] * 2
    assert_no_personal_data("\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records))


def _router(channel):
    from services.notify.adapters.channels import ChannelRouter

    return ChannelRouter({"email": channel})
