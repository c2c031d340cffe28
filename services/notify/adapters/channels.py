"""Client message channels. Each is an adapter behind one small interface:

    async def send(contact: Contact, text: str, *, notification_id: str, language: str) -> str

returning a short result code, raising ChannelError when the message did not go out (the
dispatcher retries). The embedded default writes to a local outbox file (JSON lines) with the
address masked, so a demo shows the message without keeping anyone's phone number.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from meshkernel.private_files import private_folder
from services.notify.domain.contact import Contact


class ChannelError(Exception):
    pass


class OutboxChannel:
    def __init__(self, path: Path):
        self.path = Path(path)

    async def send(self, contact: Contact, text: str, *, notification_id: str, language: str, template: str) -> str:
        line = json.dumps(
            {
                "notification_id": notification_id,
                "at": time.time(),
                "channel": contact.channel,
                "to": contact.masked(),
                "language": language,
                "template": template,
                "text": text,
            },
            ensure_ascii=False,
        )
        await asyncio.to_thread(self._append, line)
        return "outbox"

    def _append(self, line: str) -> None:
        private_folder(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class SmsGatewayChannel:
    """Placeholder for an SMS gateway (e.g. an aggregator's HTTPS API). Implement `send` with
    the gateway's client; pass the number only to the gateway call, never to a log line."""

    async def send(self, contact: Contact, text: str, *, notification_id: str, language: str, template: str) -> str:
        raise ChannelError("no SMS gateway configured")


class EmailChannel:
    """Placeholder for e-mail (SMTP with STARTTLS, or a mail API)."""

    async def send(self, contact: Contact, text: str, *, notification_id: str, language: str, template: str) -> str:
        raise ChannelError("no e-mail channel configured")


class ChannelRouter:
    """Picks the adapter by the contact's channel; the embedded default sends everything to the outbox."""

    def __init__(self, by_channel: dict[str, Any] | None = None, default=None):
        self.by_channel = by_channel or {}
        self.default = default

    async def send(self, contact: Contact, text: str, **details) -> str:
        channel = self.by_channel.get(contact.channel, self.default)
        if channel is None:
            raise ChannelError(f"no channel for {contact.channel}")
        return await channel.send(contact, text, **details)
