"""Use cases of the referral service: authorise, apply the domain rules, store, log access.

Each use case is one transaction: the new state, its outbox event and its access-log entry
commit together or not at all. gRPC, Kafka and SQL stay in the adapters.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from meshkernel.config import MeshSettings
from referralmesh.v1 import common_pb2
from services.referral.adapters import event_codec
from services.referral.adapters.storage import (
    AccessEntry,
    ConcurrentChange,
    ReferralStore,
)
from services.referral.domain import (
    Action,
    Consent,
    Directory,
    NotPermitted,
    Purpose,
    Referral,
    StaleVersion,
    apply,
    can_read,
    open_referral,
    referral_from_dict,
    referral_to_dict,
)
from services.referral.domain.errors import InvalidReferral


@dataclass(frozen=True)
class Caller:
    """Who acts: the organisation from its certificate, and the user and purpose it declares."""

    agency_id: str
    user: str = "system"
    on_behalf_of: str = "client"
    purpose: str = Purpose.REFERRAL.value


@dataclass(frozen=True)
class NewReferral:
    request_key: str
    case_id: str
    receiver_agency: str | None
    match_domain: str | None
    match_region: str | None
    match_language: str | None
    need_domains: tuple[str, ...]
    urgency: str
    languages: tuple[str, ...]
    asked_in: str
    facts: common_pb2.BindingFacts
    consent_organisations: tuple[str, ...]
    consent_purpose: str
    consent_valid_until: datetime
    contact: common_pb2.SealedContact | None = None
    fingerprint_source: bytes = field(default=b"", repr=False)


class NotFound(Exception):
    pass


class NoMatchingReceiver(Exception):
    pass


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ReferralUseCases:
    def __init__(
        self,
        store: ReferralStore,
        config: MeshSettings,
        directory: Directory,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_commit: Callable[[], None] = lambda: None,
    ):
        self.store = store
        self.config = config
        self.directory = directory
        self.clock = clock
        self.on_commit = on_commit

    # --- create -----------------------------------------------------------------------------

    def create(self, caller: Caller, command: NewReferral) -> Referral:
        if not command.request_key:
            raise InvalidReferral("request_key", "a request key is required for safe retries")
        receiver = command.receiver_agency or self._match_receiver(command)
        now = self.clock()
        consent = Consent(
            organisations=frozenset(command.consent_organisations),
            purpose=command.consent_purpose or Purpose.REFERRAL.value,
            valid_until=command.consent_valid_until,
        )
        referral, event = open_referral(
            referral_id=str(uuid.uuid4()),
            case_id=command.case_id,
            sender=caller.agency_id,
            receiver=receiver,
            need_domains=command.need_domains,
            urgency=command.urgency,
            languages=command.languages,
            consent=consent,
            purpose=Purpose.REFERRAL,
            now=now,
        )
        if not command.asked_in:
            raise InvalidReferral("asked_in", "name the municipality where help was asked")
        fingerprint = hashlib.sha256(command.fingerprint_source).hexdigest()
        existing_id = self.store.create(
            row=self._row(referral, command.asked_in, command.facts, command.contact),
            request_key=command.request_key,
            fingerprint=fingerprint,
            event=event_codec.to_outbox(
                event, self.config, asked_in=command.asked_in, facts=command.facts, contact=command.contact
            ),
            access=self._access(caller, "referral.create", referral, "created"),
        )
        if existing_id is not None:
            return self.get(caller, existing_id)
        self.on_commit()
        return referral

    def _match_receiver(self, command: NewReferral) -> str:
        found = self.directory.search(
            domain=command.match_domain or None,
            region=command.match_region or None,
            language=command.match_language or None,
            accepting_only=True,
        )
        if not found:
            raise NoMatchingReceiver("no accepting agency matches that domain, region and language")
        return found[0].agency_id

    # --- read -------------------------------------------------------------------------------

    def get(self, caller: Caller, referral_id: str) -> Referral:
        stored = self.store.get(referral_id)
        if stored is None:
            raise NotFound(referral_id)
        referral = referral_from_dict(stored.document)
        if not can_read(referral, caller.agency_id):
            self.store.record_access(self._access(caller, "referral.read", referral, "denied"))
            raise NotPermitted(f"{caller.agency_id} is not a party to referral {referral_id}", party=False)
        self.store.record_access(self._access(caller, "referral.read", referral, "read"))
        return referral

    # --- transitions ------------------------------------------------------------------------

    def transition(
        self,
        caller: Caller,
        referral_id: str,
        action: Action,
        expected_version: int,
        **codes,
    ) -> Referral:
        stored = self.store.get(referral_id)
        if stored is None:
            raise NotFound(referral_id)
        current = referral_from_dict(stored.document)
        try:
            updated, event = apply(
                current, action=action, actor=caller.agency_id,
                expected_version=expected_version, now=self.clock(), **codes,
            )
        except NotPermitted:
            self.store.record_access(self._access(caller, f"referral.{action.value.lower()}", current, "denied"))
            raise
        facts = event_codec.facts_from_document(stored.facts)
        contact = (
            common_pb2.SealedContact(key_id=stored.contact_key_id, ciphertext=stored.contact_ciphertext)
            if stored.contact_ciphertext else None
        )
        try:
            self.store.save_transition(
                row=self._row(updated, stored.asked_in, facts, contact),
                expected_version=expected_version,
                events=[event_codec.to_outbox(event, self.config, asked_in=stored.asked_in,
                                              facts=facts, contact=contact)],
                access=self._access(caller, f"referral.{action.value.lower()}", updated, "changed"),
            )
        except ConcurrentChange:
            raise StaleVersion(
                f"referral {referral_id} changed while this request was handled; read it again and retry"
            ) from None
        self.on_commit()
        return updated

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _row(referral: Referral, asked_in: str, facts, contact) -> dict:
        return {
            "referral_id": referral.referral_id,
            "case_id": referral.case_id,
            "sender": referral.sender,
            "receiver": referral.receiver,
            "pending_receiver": referral.pending_receiver,
            "status": referral.status.value,
            "version": referral.version,
            "asked_in": asked_in,
            "updated_at": referral.updated_at,
            "document": referral_to_dict(referral),
            "facts": event_codec.facts_to_document(facts),
            "contact_key_id": contact.key_id if contact is not None else None,
            "contact_ciphertext": contact.ciphertext if contact is not None else None,
        }

    @staticmethod
    def _access(caller: Caller, action: str, referral: Referral, outcome: str) -> AccessEntry:
        return AccessEntry(
            action=action,
            organisation=caller.agency_id,
            user=caller.user,
            on_behalf_of=caller.on_behalf_of,
            purpose=caller.purpose,
            outcome=outcome,
            case_id=referral.case_id,
            referral_id=referral.referral_id,
        )
