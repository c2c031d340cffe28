"""A client's one contact channel, as the notify service sees it after opening the seal.

The plain value exists only in memory, for the moment of delivery; anything written down
(outbox, logs, records) gets the masked form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

CHANNELS = ("sms", "email")


class InvalidContact(ValueError):
    """The message never repeats the value itself."""


@dataclass(frozen=True)
class Contact:
    channel: str  # "sms" or "email"
    address: str

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InvalidContact(f"channel must be one of {CHANNELS}")
        if not self.address.strip() or len(self.address) > 254:
            raise InvalidContact("address must be 1 to 254 characters")
        if self.channel == "email" and "@" not in self.address:
            raise InvalidContact("an e-mail address needs an @")
        if self.channel == "sms" and sum(ch.isdigit() for ch in self.address) < 6:
            raise InvalidContact("a phone number needs at least 6 digits")

    def to_bytes(self) -> bytes:
        return json.dumps({"channel": self.channel, "address": self.address}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Contact:
        data = json.loads(raw)
        return cls(channel=data["channel"], address=data["address"])

    def masked(self) -> str:
        """Enough to recognise the channel, not enough to reach or identify anyone."""
        if self.channel == "email":
            local, _, domain = self.address.partition("@")
            return f"{local[:1]}***@***{domain[-3:]}" if domain else "***"
        digits = [ch for ch in self.address if ch.isdigit()]
        return "***" + "".join(digits[-2:])

    def __repr__(self) -> str:  # never print the address by accident
        return f"Contact(channel={self.channel!r}, address={self.masked()!r})"

    __str__ = __repr__
