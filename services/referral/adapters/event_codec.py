"""Domain events of the referral service -> protobuf envelopes for the outbox."""

from __future__ import annotations

from typing import Any

from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from meshkernel.topics import REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from services.referral.adapters.storage import OutboxRecord
from services.referral.domain import DomainEvent

SERVICE = "referral"


def proto_enum(enum_type: Any, value: Any, prefix: str = "") -> Any:
    """Map a domain code onto the proto enum of the same name (prefixed where proto must)."""
    if value is None:
        return 0
    name = getattr(value, "value", value)
    for candidate in (name, f"{prefix}{name}"):
        if candidate in enum_type.keys():  # noqa: SIM118 - protobuf enums have no `in`
            return enum_type.Value(candidate)
    raise ValueError(f"{name!r} has no counterpart in {enum_type.DESCRIPTOR.name}")


def facts_from_document(document: dict) -> common_pb2.BindingFacts:
    facts = common_pb2.BindingFacts()
    if document:
        facts.ParseFromString(bytes.fromhex(document["proto"]))
    return facts


def facts_to_document(facts: common_pb2.BindingFacts) -> dict:
    return {"proto": facts.SerializeToString(deterministic=True).hex()}


def to_outbox(
    event: DomainEvent,
    config: MeshSettings,
    *,
    asked_in: str,
    facts: common_pb2.BindingFacts,
    contact: common_pb2.SealedContact | None,
    snapshot: dict | None = None,
    parties: tuple[str, ...] | frozenset[str] = (),
) -> OutboxRecord:
    """The envelope for Kafka, plus what the change stream needs (snapshot, parties)."""
    payload = events_pb2.ReferralEvent(
        referral_id=event.referral_id,
        event_type=event.event_type,
        from_status=proto_enum(common_pb2.ReferralStatus, event.from_status),
        to_status=proto_enum(common_pb2.ReferralStatus, event.to_status),
        version=event.version,
        actor=event.actor,
        sender=event.sender,
        receiver=event.receiver,
        pending_receiver=event.pending_receiver or "",
        need_domains=[str(domain) for domain in event.need_domains],
        urgency=proto_enum(common_pb2.Urgency, event.urgency),
        languages=list(event.languages),
        asked_in=asked_in,
        facts=facts,
        decline_reason=proto_enum(common_pb2.DeclineReason, event.decline_reason, "DECLINE_"),
        outcome=proto_enum(common_pb2.Outcome, event.outcome, "OUTCOME_"),
        cancel_reason=proto_enum(common_pb2.CancelReason, event.cancel_reason),
        holder=event.holder,
        previous_holder=event.previous_holder or "",
        handover=event.handover,
        addressee=event.addressee or "",
    )
    if contact is not None and contact.ciphertext:
        payload.contact.CopyFrom(contact)
    wrapped = envelopes.new_envelope(
        case_id=event.case_id,
        producer=SERVICE,
        event_id=envelopes.derived_id("referral-event", event.event_id),
        occurred_at=event.occurred_at,
        referral=payload,
    )
    return OutboxRecord(
        event_id=wrapped.event_id,
        topic=config.topic(REFERRAL_EVENTS.base_name),
        key=event.case_id,
        value=envelopes.encode(wrapped),
        referral_id=event.referral_id,
        event_type=event.event_type,
        snapshot=snapshot,
        parties=tuple(sorted(parties)),
    )
