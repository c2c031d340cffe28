"""Use cases of the agency directory for operators: add, update, suspend, list.

Only the operator role may call them (a certificate with the URI name
urn:referralmesh:operator:NAME; in MESH_MODE=local without TLS the `x-mesh-dev-operator`
header). Each change is one transaction: the directory row, the directory event for
`mesh.directory.v1` and, for a suspension, one `ReferralReceiverSuspended` event per open
referral of the agency on `referral.events.v1`, which the region service escalates to the
coordinator of the case's responsible region. Revoking the agency's certificate is the CA's
job (`mesh agency suspend --pki DIR` does it with the local CA); until the CRL reaches the
servers, a suspended agency's certificate already names no agency (LiveDirectory.by_oin).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from meshkernel.principal import Denied, Principal
from meshkernel.topics import DIRECTORY_EVENTS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from services.referral.adapters import event_codec
from services.referral.adapters.agency_store import AffectedReferral, AgencyStore
from services.referral.adapters.storage import OutboxRecord
from services.referral.domain import referral_to_dict
from services.referral.domain.agency_directory import (
    DirectoryChange,
    DirectoryEntry,
    validated_agency,
)

OPERATOR = "operator"
RECEIVER_SUSPENDED = "ReferralReceiverSuspended"
SERVICE = "referral"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def require_operator(principal: Principal) -> None:
    if principal.role != OPERATOR:
        raise Denied("only an operator may change or list the agency directory")


class AgencyAdmin:
    def __init__(self, agencies: AgencyStore, config: MeshSettings, *, clock=_utcnow, on_commit=lambda: None):
        self.agencies = agencies
        self.config = config
        self.clock = clock
        self.on_commit = on_commit

    def add(self, principal: Principal, fields: Mapping[str, Any]) -> DirectoryEntry:
        require_operator(principal)
        agency = validated_agency(fields, self.agencies.regions)
        change = self.agencies.apply(lambda book: book.add(agency, principal.name), self._events)
        self.on_commit()
        return change.entry

    def update(self, principal: Principal, fields: Mapping[str, Any], expected_version: int) -> DirectoryEntry:
        require_operator(principal)
        agency = validated_agency(fields, self.agencies.regions)
        change = self.agencies.apply(lambda book: book.update(agency, expected_version, principal.name), self._events)
        self.on_commit()
        return change.entry

    def suspend(self, principal: Principal, agency_id: str, reason_code: str) -> tuple[DirectoryEntry, list[str]]:
        require_operator(principal)
        escalated: list[str] = []

        def events(change: DirectoryChange, affected: list[AffectedReferral]) -> list[OutboxRecord]:
            escalated.extend(a.referral.referral_id for a in affected)
            return self._events(change, affected)

        change = self.agencies.apply(lambda book: book.suspend(agency_id, reason_code, principal.name), events)
        self.on_commit()
        return change.entry, escalated

    def listing(self, principal: Principal, *, include_suspended: bool = False) -> list[DirectoryEntry]:
        require_operator(principal)
        return self.agencies.book().entries(include_suspended=include_suspended)

    # --- events -------------------------------------------------------------------------------

    def _events(self, change: DirectoryChange, affected: list[AffectedReferral]) -> list[OutboxRecord]:
        now = self.clock()
        records = [self._directory_event(change, now)]
        records += [self._suspension_event(change, item, now) for item in affected]
        return records

    def _directory_event(self, change: DirectoryChange, now: datetime) -> OutboxRecord:
        entry = change.entry
        # Keyed (and "case id") by agency id: one agency's changes stay in order.
        wrapped = envelopes.new_envelope(
            case_id=entry.agency_id,
            producer=SERVICE,
            event_id=envelopes.derived_id("agency-directory", entry.agency_id, str(entry.version)),
            occurred_at=now,
            agency_directory_changed=events_pb2.AgencyDirectoryChanged(
                change=change.change,
                agency=directory_agency(entry),
                reason_code=change.reason_code,
                operator=change.operator,
            ),
        )
        return OutboxRecord(
            event_id=wrapped.event_id,
            topic=self.config.topic(DIRECTORY_EVENTS.base_name),
            key=entry.agency_id,
            value=envelopes.encode(wrapped),
        )

    def _suspension_event(self, change: DirectoryChange, item: AffectedReferral, now: datetime) -> OutboxRecord:
        """No lifecycle change: the referral's status and version stay, the region service
        escalates the case to the coordinator (rule receiver_suspended). It carries the asking
        place and the facts like every referral event, so the resolver decides as before."""
        referral = item.referral
        status = event_codec.proto_enum(common_pb2.ReferralStatus, referral.status)
        payload = events_pb2.ReferralEvent(
            referral_id=referral.referral_id,
            event_type=RECEIVER_SUSPENDED,
            from_status=status,
            to_status=status,
            version=referral.version,
            actor="system",
            sender=referral.sender,
            receiver=referral.receiver,
            pending_receiver=referral.pending_receiver or "",
            need_domains=[str(domain) for domain in referral.need_domains],
            urgency=event_codec.proto_enum(common_pb2.Urgency, referral.urgency),
            languages=list(referral.languages),
            asked_in=item.asked_in,
            facts=event_codec.facts_from_document(item.facts),
            holder=referral.holder,
            addressee=change.entry.agency_id,  # the suspended agency: the one that cannot act
        )
        wrapped = envelopes.new_envelope(
            case_id=referral.case_id,
            producer=SERVICE,
            event_id=envelopes.derived_id(
                "receiver-suspended", referral.referral_id, change.entry.agency_id, str(change.entry.version)
            ),
            occurred_at=now,
            referral=payload,
        )
        return OutboxRecord(
            event_id=wrapped.event_id,
            topic=self.config.topic(REFERRAL_EVENTS.base_name),
            key=referral.case_id,
            value=envelopes.encode(wrapped),
            referral_id=referral.referral_id,
            event_type=RECEIVER_SUSPENDED,
            snapshot=referral_to_dict(referral),
            parties=tuple(sorted(referral.parties)),
        )


def directory_agency(entry: DirectoryEntry) -> common_pb2.DirectoryAgency:
    agency = entry.agency
    return common_pb2.DirectoryAgency(
        agency_id=agency.agency_id,
        name=agency.name,
        client_display_name=agency.client_display_name,
        kind=agency.kind.value,
        oin=agency.oin,
        regions_served=list(agency.regions_served),
        need_domains=[d.value for d in agency.need_domains],
        languages=list(agency.languages),
        accepting=agency.accepting,
        suspended=agency.suspended,
        version=entry.version,
    )


def agency_fields_of(message: common_pb2.DirectoryAgency) -> dict[str, Any]:
    """Operator input as the directory's fields (validated by the domain)."""
    return {
        "id": message.agency_id,
        "name": message.name,
        "client_display_name": message.client_display_name,
        "kind": message.kind,
        "oin": message.oin,
        "regions_served": list(message.regions_served),
        "need_domains": list(message.need_domains),
        "languages": list(message.languages),
        "accepting": message.accepting,
    }
