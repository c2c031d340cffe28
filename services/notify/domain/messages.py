"""Client messages: which language, which template, which facts. Pure; rendering is an adapter.

Messages tell the client, in plain words: which organisation and which region now help them,
what happens next, and where to ask questions. No legal terms, no case details.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ("nl", "en", "es", "pl", "ro")
FALLBACK_LANGUAGE = "en"  # understood by more clients who were not raised in the Netherlands
CLIENT_TEMPLATES = ("client_responsible_region", "client_handover_proposed")


def choose_language(preferred: tuple[str, ...] | list[str]) -> str:
    """The client's most preferred language we have texts in."""
    for code in preferred:
        code = (code or "").lower().split("-")[0]
        if code in LANGUAGES:
            return code
    return FALLBACK_LANGUAGE


@dataclass(frozen=True)
class MessageFacts:
    organisation: str  # the organisation that will help (receiving agency), by name
    region: str  # the responsible region, by name
    handover_region: str  # the region that may take over (empty when none)
    help_name: str  # the independent point of contact
    help_phone: str
    help_url: str

    def variables(self) -> dict[str, str]:
        return {
            "organisation": self.organisation,
            "region": self.region,
            "handover_region": self.handover_region,
            "help_name": self.help_name,
            "help_phone": self.help_phone,
            "help_url": self.help_url,
        }


# The e-mail subject is shown on lock screens and in shared inboxes: neutral, the same for every
# message, nothing about what the client is helped with.
EMAIL_SUBJECTS = {
    "nl": "Bericht over uw vraag om hulp",
    "en": "A message about your request for help",
    "es": "Un mensaje sobre su solicitud de ayuda",
    "pl": "Wiadomość w sprawie Twojej prośby o pomoc",
    "ro": "Un mesaj despre cererea dumneavoastră de ajutor",
}


def email_subject(language: str) -> str:
    return EMAIL_SUBJECTS.get(language, EMAIL_SUBJECTS[FALLBACK_LANGUAGE])
