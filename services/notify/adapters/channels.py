"""Client message channels. Each is an adapter behind one small interface:

    async def send(contact: Contact, text: str, *, notification_id: str, language: str) -> str

returning a short result code, raising ChannelError when the message did not go out (the
dispatcher retries) and ChannelRejected when it never will (no retry). The embedded default
writes to a local outbox file (JSON lines) with the address masked, so a demo shows the message
without keeping anyone's phone number. E-mail (SMTP with STARTTLS) is `channels_email.py`, SMS
through an HTTP gateway `channels_sms.py`. An error's text is a code, never the address.
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


class ChannelRejected(ChannelError):
    """The provider refused the message for good (a bad number, a refused address): no retry."""


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
