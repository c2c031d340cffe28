"""The client channels and send-time rules the settings ask for.

SMTP configured -> e-mail contacts by e-mail; an SMS gateway configured -> phone contacts by
SMS; anything not configured goes to the local outbox file (the embedded default, for the demo
and small set-ups). Secrets (SMTP password, gateway token, callback secret) are read from files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from meshkernel.config import MeshSettings
from services.notify.adapters.channels import ChannelRouter, OutboxChannel
from services.notify.adapters.channels_email import EmailChannel, SmtpSettings, read_secret_file
from services.notify.adapters.channels_sms import JsonHttpGateway, SmsGateway, SmsGatewayChannel
from services.notify.adapters.client_outcomes import ClientOutcomes
from services.notify.adapters.sms_status import SmsStatusCallback
from services.notify.domain.send_rules import SendPolicy

SMS_PROVIDERS = {"json": JsonHttpGateway}


def send_policy_from(config: MeshSettings) -> SendPolicy:
    start, _, end = config.notify_quiet_hours.partition("-")
    return SendPolicy(
        quiet_start=time.fromisoformat(start.strip()),
        quiet_end=time.fromisoformat(end.strip()),
        timezone=config.notify_quiet_hours_timezone,
        case_gap=timedelta(minutes=config.notify_case_message_gap_minutes),
    )


@dataclass
class ClientChannels:
    router: ChannelRouter
    sms_gateway: SmsGateway | None = None
    closers: list[Any] = field(default_factory=list)

    def status_callback(self, config: MeshSettings, outcomes: ClientOutcomes) -> SmsStatusCallback | None:
        """The delivery-report route, when an SMS gateway is configured (its secret is required)."""
        if self.sms_gateway is None:
            return None
        if config.notify_sms_callback_secret_file is None:
            raise ValueError("MESH_NOTIFY_SMS_CALLBACK_SECRET_FILE is required with an SMS gateway")
        secret = read_secret_file(config.notify_sms_callback_secret_file).encode()
        return SmsStatusCallback(self.sms_gateway, outcomes, secret)

    async def close(self) -> None:
        for closer in self.closers:
            await closer.close()


def client_channels(config: MeshSettings, outbox_path: Path) -> ClientChannels:
    by_channel: dict[str, Any] = {}
    channels = ClientChannels(router=ChannelRouter(default=OutboxChannel(outbox_path)))
    channels.router.by_channel = by_channel  # filled below
    if config.notify_smtp_host:
        if not config.notify_smtp_sender:
            raise ValueError("MESH_NOTIFY_SMTP_SENDER is required with MESH_NOTIFY_SMTP_HOST")
        password = read_secret_file(config.notify_smtp_password_file) if config.notify_smtp_password_file else None
        by_channel["email"] = EmailChannel(
            SmtpSettings(
                host=config.notify_smtp_host,
                port=config.notify_smtp_port,
                sender=config.notify_smtp_sender,
                username=config.notify_smtp_username,
                password=password,
                ca_file=config.notify_smtp_ca_file,
                timeout=config.notify_smtp_timeout,
            )
        )
    if config.notify_sms_gateway_url:
        provider = SMS_PROVIDERS.get(config.notify_sms_provider)
        if provider is None:
            raise ValueError(f"unknown MESH_NOTIFY_SMS_PROVIDER; known: {sorted(SMS_PROVIDERS)}")
        if config.notify_sms_token_file is None:
            raise ValueError("MESH_NOTIFY_SMS_TOKEN_FILE is required with an SMS gateway")
        gateway = provider(
            config.notify_sms_gateway_url,
            read_secret_file(config.notify_sms_token_file),
            sender=config.notify_sms_sender,
            callback_url=config.notify_sms_callback_url,
            timeout=config.notify_sms_timeout,
        )
        channels.sms_gateway = gateway
        sms = SmsGatewayChannel(gateway)
        by_channel["sms"] = sms
        channels.closers.append(sms)
    return channels
