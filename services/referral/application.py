"""Use cases of the referral service: authorise, apply the domain rules, store, log access.

Each use case is one transaction: the new state, its outbox event and its access-log entry
commit together or not at all. gRPC, Kafka and SQL stay in the adapters.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, cast, runtime_checkable

from meshkernel.config import MeshSettings
from referencedata.errors import InvalidQuery
from referralmesh.v1 import common_pb2
from services.referral.adapters import event_codec
from services.referral.adapters.storage import (
    AccessEntry,
    Change,
    ConcurrentChange,
    ListQuery,
    ReferralStore,
)
from services.referral.domain import (
    OPEN_STATUSES,
    SYSTEM_ACTOR,
    Action,
    Agency,
    Consent,
    Directory,
    DomainError,
    NotPermitted,
    Purpose,
    Referral,
    StaleVersion,
    apply,
    can_read,
    change_facts,
    open_referral,
    referral_from_dict,
    referral_to_dict,
)
from services.referral.domain.agency_directory import receiver_refusal
from services.referral.domain.binding import FactPeriod, check_binding_facts
from services.referral.domain.case_binding import check_may_refer_on_case
from services.referral.domain.consent import check_fresh_consent
from services.referral.domain.errors import InvalidCommand, InvalidReferral, ReceiverSuspended

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
_CONSENT_RETRIES = 5


@dataclass(frozen=True)
class Caller:
    """Who acts: the organisation from its certificate, and the user and purpose it declares."""

    agency_id: str
    user: str = "system"
    on_behalf_of: str = "client"
    purpose: str = Purpose.REFERRAL.value


# The service itself, when it closes referrals whose consent ran out.
CONSENT_SWEEPER = Caller(agency_id=SYSTEM_ACTOR, user="consent-expiry", on_behalf_of="client")


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
    # When the client gave this consent; after a withdrawal only later consent opens a referral.
    consent_recorded_at: datetime | None = None


class NotFound(Exception):
    pass


@dataclass(frozen=True)
class ListFilter:
    statuses: tuple[str, ...] = ()
    direction: str = "any"  # any | sent | received
    need_domain: str | None = None
    updated_since: datetime | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str = ""

    def fingerprint(self) -> str:
        """What a page token is bound to: the same filters, or the token is refused."""
        source = json.dumps(
            [
                sorted(self.statuses),
                self.direction,
                self.need_domain,
                self.updated_since.isoformat() if self.updated_since else None,
            ],
        )
        return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReferralChangeSeen:
    cursor: str
    event_type: str
    referral: Referral


def encode_cursor(position: int) -> str:
    """Opaque stream cursor; callers store it and hand it back, never parse it."""
    return base64.urlsafe_b64encode(f"c1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, position = raw.split(":", 1)
        if tag != "c1" or not position.isdigit():
            raise ValueError
        return int(position)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCommand("cursor", "not a cursor this service handed out") from None


def _encode_page_token(after_referral_id: str, fingerprint: str) -> str:
    raw = json.dumps({"a": after_referral_id, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_page_token(token: str, fingerprint: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, bound_to = data["a"], data["f"]
        if not isinstance(after, str) or not isinstance(bound_to, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InvalidCommand("page_token", "not a page token this service handed out") from None
    if bound_to != fingerprint:
        raise InvalidCommand("page_token", "the filters changed; start again without a page token")
    return after


class NoMatchingReceiver(Exception):
    pass


@runtime_checkable
class DirectoryView(Protocol):
    """The agency directory as it stands now (the database's, reloaded when it changes)."""

    def current(self) -> Directory: ...


@dataclass(frozen=True)
class FixedDirectory:
    """A directory that never changes (tests, tools)."""

    directory: Directory

    def current(self) -> Directory:
        return self.directory


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ReferralUseCases:
    def __init__(
        self,
        store: ReferralStore,
        config: MeshSettings,
        directory: Directory | DirectoryView,
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_commit: Callable[[], object] = lambda: None,
    ):
        self.store = store
        self.config = config
        self.directory = directory if isinstance(directory, DirectoryView) else FixedDirectory(directory)
        self.clock = clock
        self.on_commit = on_commit

    # --- create -----------------------------------------------------------------------------

    def create(self, caller: Caller, command: NewReferral) -> Referral:
        if not command.request_key:
            raise InvalidReferral("request_key", "a request key is required for safe retries")
        self._check_case_binding(caller, command.case_id)
        receiver = command.receiver_agency or self._match_receiver(command)
        self._refuse_suspended(receiver)
        now = self.clock()
        consent = Consent(
            organisations=frozenset(command.consent_organisations),
            purpose=cast(Purpose, command.consent_purpose or Purpose.REFERRAL.value),
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
        check_binding_facts(
            asked_in=command.asked_in,
            residence=[FactPeriod(p.municipality, p.from_date, p.to_date) for p in command.facts.residence],
            work=[FactPeriod(p.municipality, p.from_date, p.to_date) for p in command.facts.work],
            grew_up_in=command.facts.grew_up_in,
            family_in=command.facts.family_in,
            today=now.date(),
        )
        check_fresh_consent(self._consent_withdrawn_at(command.case_id), command.consent_recorded_at, now)
        fingerprint = hashlib.sha256(command.fingerprint_source).hexdigest()
        row = self._row(referral, command.asked_in, command.facts, command.contact)
        existing_id = self.store.create(
            row=row,
            request_key=command.request_key,
            fingerprint=fingerprint,
            event=event_codec.to_outbox(
                event,
                self.config,
                asked_in=command.asked_in,
                facts=command.facts,
                contact=command.contact,
                snapshot=row["document"],  # the stored document is the change stream's snapshot
                parties=referral.parties,
            ),
            access=self._access(caller, "referral.create", referral, "created"),
        )
        if existing_id is not None:
            return self.get(caller, existing_id)
        self.on_commit()
        return referral

    def _refuse_suspended(self, receiver: str) -> None:
        refusal = receiver_refusal(self.directory.current(), receiver)
        if refusal:
            raise ReceiverSuspended(refusal, receiver=receiver)

    def _consent_withdrawn_at(self, case_id: str) -> datetime | None:
        return self.store.consent_withdrawn_at(case_id)

    def _check_case_binding(self, caller: Caller, case_id: str) -> None:
        """Another referral on an existing case only from a current party (domain/case_binding.py)."""
        try:
            check_may_refer_on_case(
                caller.agency_id, case_id, [referral_from_dict(document) for document in self.store.of_case(case_id)]
            )
        except NotPermitted:
            self.store.record_access(self._case_access(caller, "referral.create", case_id, "denied"))
            raise

    def _match_receiver(self, command: NewReferral) -> str:
        found = self._search(
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
            raise NotFound("no such referral")
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
            raise NotFound("no such referral")
        current = referral_from_dict(stored.document)
        if action is Action.FORWARD and codes.get("new_receiver") and can_read(current, caller.agency_id):
            self._refuse_suspended(codes["new_receiver"])
        try:
            updated, event = apply(
                current,
                action=action,
                actor=caller.agency_id,
                expected_version=expected_version,
                now=self.clock(),
                **codes,
            )
        except NotPermitted:
            self.store.record_access(self._access(caller, f"referral.{action.value.lower()}", current, "denied"))
            raise
        facts = event_codec.facts_from_document(stored.facts)
        return self._commit_change(
            caller, stored, current, updated, event, facts, expected_version, f"referral.{action.value.lower()}"
        )

    def _commit_change(
        self,
        caller: Caller,
        stored,
        current: Referral,
        updated: Referral,
        event,
        facts: common_pb2.BindingFacts,
        expected_version: int,
        access_action: str,
    ) -> Referral:
        """State, outbox event and access entry in one transaction; a lost race is StaleVersion."""
        contact = (
            common_pb2.SealedContact(key_id=stored.contact_key_id, ciphertext=stored.contact_ciphertext)
            if stored.contact_ciphertext
            else None
        )
        row = self._row(updated, stored.asked_in, facts, contact)
        try:
            self.store.save_transition(
                row=row,
                expected_version=expected_version,
                events=[
                    event_codec.to_outbox(
                        event,
                        self.config,
                        asked_in=stored.asked_in,
                        facts=facts,
                        contact=contact,
                        snapshot=row["document"],
                        parties=current.parties | updated.parties,
                    )
                ],
                access=self._access(caller, access_action, updated, "changed"),
            )
        except ConcurrentChange:
            raise StaleVersion(
                f"referral {updated.referral_id} changed while this request was handled; read it again and retry"
            ) from None
        self.on_commit()
        return updated

    # --- changed facts ----------------------------------------------------------------------

    def update_facts(
        self, caller: Caller, referral_id: str, expected_version: int, facts: common_pb2.BindingFacts
    ) -> Referral:
        """The sender or holder records changed binding facts (see ``lifecycle.change_facts``).

        The new facts replace the stored ones; state, ReferralFactsChanged outbox event (carrying
        the new facts, so the region service decides again) and access entry commit together.
        """
        stored = self.store.get(referral_id)
        if stored is None:
            raise NotFound("no such referral")
        current = referral_from_dict(stored.document)
        try:
            updated, event = change_facts(
                current,
                actor=caller.agency_id,
                expected_version=expected_version,
                now=self.clock(),
                asked_in=stored.asked_in,
                residence=[FactPeriod(p.municipality, p.from_date, p.to_date) for p in facts.residence],
                work=[FactPeriod(p.municipality, p.from_date, p.to_date) for p in facts.work],
                grew_up_in=list(facts.grew_up_in),
                family_in=list(facts.family_in),
            )
        except NotPermitted:
            self.store.record_access(self._access(caller, "referral.update_facts", current, "denied"))
            raise
        return self._commit_change(
            caller, stored, current, updated, event, facts, expected_version, "referral.update_facts"
        )

    # --- consent ----------------------------------------------------------------------------

    def expire_consents(self, limit: int = 200) -> list[Referral]:
        """Cancel open referrals whose recorded consent ran out (CONSENT_EXPIRED).

        Run by the service's sweeper as the system actor; each change reaches both agencies
        like any other. A referral that changed meanwhile is looked at again on the next sweep.
        """
        expired = []
        now = self.clock()
        for referral_id in self.store.consent_expired(now, [status.value for status in OPEN_STATUSES], limit):
            stored = self.store.get(referral_id)
            if stored is None:
                continue
            current = referral_from_dict(stored.document)
            try:
                expired.append(self.transition(CONSENT_SWEEPER, referral_id, Action.EXPIRE_CONSENT, current.version))
            except DomainError:
                continue
        return expired

    def withdraw_consent(self, caller: Caller, case_id: str) -> list[Referral]:
        """The client withdrew consent: cancel every open referral of the case, whichever agency
        recorded the withdrawal, since consent is the client's. The caller must be a party to
        the case; referrals it is no party to are closed by the system on the client's behalf.

        All of them change in one transaction (CONSENT_WITHDRAWN); each change reaches both
        agencies through Kafka and the change stream. A concurrent change retries the whole.
        Until consent recorded after this moment arrives, the case takes no new referral.
        """
        if not case_id:
            raise InvalidCommand("case_id", "name the case whose consent was withdrawn")
        for _attempt in range(_CONSENT_RETRIES):
            stored = [referral_from_dict(document) for document in self.store.of_case(case_id)]
            mine = [referral for referral in stored if can_read(referral, caller.agency_id)]
            if not mine:
                self.store.record_access(self._case_access(caller, "referral.withdraw_consent", case_id, "denied"))
                raise NotPermitted(f"{caller.agency_id} is not a party to case {case_id}", party=False)
            now = self.clock()
            # Recorded first, so even a case with no open referral takes no new one until fresh
            # consent; should the closing below fail, a retry of the withdrawal finishes it.
            self.store.record_consent_withdrawal(case_id, now)
            changes, cancelled = [], []
            for current in stored:
                if current.status not in OPEN_STATUSES:
                    continue
                party = can_read(current, caller.agency_id)
                updated, event = apply(
                    current,
                    action=Action.WITHDRAW_CONSENT,
                    actor=caller.agency_id if party else SYSTEM_ACTOR,
                    expected_version=current.version,
                    now=now,
                )
                full = self.store.get(current.referral_id)
                assert full is not None  # listed just above, in this transaction
                facts = event_codec.facts_from_document(full.facts)
                contact = (
                    common_pb2.SealedContact(key_id=full.contact_key_id or "", ciphertext=full.contact_ciphertext)
                    if full.contact_ciphertext
                    else None
                )
                changes.append(
                    (
                        self._row(updated, full.asked_in, facts, contact),
                        current.version,
                        [
                            event_codec.to_outbox(
                                event,
                                self.config,
                                asked_in=full.asked_in,
                                facts=facts,
                                contact=contact,
                                snapshot=referral_to_dict(updated),
                                parties=current.parties | updated.parties,
                            )
                        ],
                        self._access(caller, "referral.withdraw_consent", updated, "changed"),
                    )
                )
                if party:  # the caller hears only of referrals it may read
                    cancelled.append(updated)
            if not changes:
                self.store.record_accesses(
                    self._access(caller, "referral.withdraw_consent", referral, "unchanged") for referral in mine
                )
                return []
            try:
                self.store.save_transitions(changes)
            except ConcurrentChange:
                continue
            self.on_commit()
            return cancelled
        raise StaleVersion(f"referrals of case {case_id} kept changing; try again")

    # --- lists, stream, directory, access log ------------------------------------------------

    def list_referrals(self, caller: Caller, query: ListFilter) -> tuple[list[Referral], str]:
        """One page of the caller's referrals and the token of the next page ('' at the end)."""
        if query.direction not in ("any", "sent", "received"):
            raise InvalidCommand("direction", "must be sent, received or unspecified")
        size = query.page_size or DEFAULT_PAGE_SIZE
        if not 0 < size <= MAX_PAGE_SIZE:
            raise InvalidCommand("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
        fingerprint = query.fingerprint()
        after = _decode_page_token(query.page_token, fingerprint) if query.page_token else None
        documents = self.store.list_referrals(
            ListQuery(
                agency_id=caller.agency_id,
                statuses=query.statuses,
                direction=query.direction,
                need_domain=query.need_domain,
                updated_since=query.updated_since,
                after_referral_id=after,
                limit=size + 1,
            )
        )
        found = [referral_from_dict(document) for document in documents]
        page, more = found[:size], len(found) > size
        self.store.record_accesses(self._access(caller, "referral.list", referral, "read") for referral in page)
        token = _encode_page_token(page[-1].referral_id, fingerprint) if more and page else ""
        return page, token

    def stream_start(self, cursor: str) -> int:
        """The position a stream starts after: the cursor handed back, or now."""
        return decode_cursor(cursor) if cursor else self.store.latest_position()

    def changes_after(self, caller: Caller, position: int, limit: int = 200) -> list[ReferralChangeSeen]:
        """Changes relevant to the caller after a position, oldest first; each one is logged as read."""
        changes: list[Change] = self.store.changes_after(caller.agency_id, position, limit)
        seen = [
            ReferralChangeSeen(encode_cursor(change.position), change.event_type, referral_from_dict(change.snapshot))
            for change in changes
        ]
        self.store.record_accesses(self._access(caller, "referral.watch", item.referral, "read") for item in seen)
        return seen

    def search_agencies(
        self,
        caller: Caller,
        *,
        domain: str | None,
        region: str | None,
        language: str | None,
        accepting_only: bool,
    ) -> list[Agency]:
        return self._search(domain=domain, region=region, language=language, accepting_only=accepting_only)

    def _search(self, **filters) -> list[Agency]:
        try:
            return self.directory.current().search(**filters)
        except InvalidQuery as bad:
            raise InvalidCommand(bad.field, bad.problem) from None

    def access_log(self, caller: Caller, case_id: str) -> list[dict]:
        """Entries about the case's referrals the caller is party to (the client's right of access)."""
        if not case_id:
            raise InvalidCommand("case_id", "name the case")
        mine = [
            referral
            for referral in map(referral_from_dict, self.store.of_case(case_id))
            if can_read(referral, caller.agency_id)
        ]
        if not mine:
            self.store.record_access(self._case_access(caller, "access_log.read", case_id, "denied"))
            raise NotPermitted(f"{caller.agency_id} is not a party to case {case_id}", party=False)
        entries = self.store.access_entries(case_id, [referral.referral_id for referral in mine])
        self.store.record_accesses(self._access(caller, "access_log.read", referral, "read") for referral in mine)
        return entries

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
            "need_domains": "," + ",".join(str(domain) for domain in referral.need_domains) + ",",
            "document": referral_to_dict(referral),
            "facts": event_codec.facts_to_document(facts),
            "contact_key_id": contact.key_id if contact is not None else None,
            "contact_ciphertext": contact.ciphertext if contact is not None else None,
            "consent_valid_until": referral.consent.valid_until,
        }

    @staticmethod
    def _case_access(caller: Caller, action: str, case_id: str, outcome: str) -> AccessEntry:
        """An access entry about a whole case (no single referral), e.g. a refused party."""
        return AccessEntry(
            action=action,
            organisation=caller.agency_id,
            user=caller.user,
            on_behalf_of=caller.on_behalf_of,
            purpose=caller.purpose,
            outcome=outcome,
            case_id=case_id,
        )

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
