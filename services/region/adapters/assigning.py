"""From one incoming event and a case's stored record to (at most) one assignment event.

No Kafka here, so it can be tested without a broker: the Faust agent (streams.py) reads the
case's record from its table, calls `Assigner.on_referral` / `Assigner.on_override`, sends the
assignment if there is one, and stores the new record. What moves responsibility is decided by
the pure `services.region.domain.responsibility`; the resolver says who is bound where.

A case record holds identifiers, region codes, rule names and times, no facts and no names; and
the last few assignments as sent (what `region.assignments.v1` carries), to send again when
their cause is redelivered (`sent_for`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meshkernel import envelope as envelopes
from referencedata.agencies import load_directory
from referencedata.need_domains import binding_service
from referralmesh.v1 import events_pb2
from services.region.adapters.facts_mapping import assignment_from, request_from_proto
from services.region.decide import Resolver
from services.region.domain import responsibility as r
from services.region.domain.decision import Decision, explanation_languages
from services.region.domain.errors import InvalidInput

SERVICE = "region"

# Referral events that always lead to a (re)decision with an assignment, ReferralFactsChanged
# included (an agency recorded new binding facts: the handover proposal may change, the
# responsible region does not). Any other referral event is decided again too, but yields an
# assignment only when the outcome changed (time passing a binding threshold).
DECIDING_EVENTS = frozenset({"ReferralRequested", "ReferralDeclined", "ReferralForwarded", "ReferralFactsChanged"})
OVERRIDE_TRIGGER = "CoordinatorOverride"
LIFT_TRIGGER = "CoordinatorOverrideLifted"
SEEN_LIMIT = 256  # event ids remembered per case for deduplication of redeliveries
# Assignments kept as sent (bytes) per case, for a redelivered cause to send again: the record is
# durable before the assignment surely is (see `sent_for`); only the newest inputs can come again.
SENT_LIMIT = 8


class Refused(ValueError):
    """An event the service cannot act on; it goes to the dead-letter topic with this reason."""


def load_agency_regions(directory_path: Path) -> dict[str, frozenset[str]]:
    """agency id -> the regions it serves, from the agency directory."""
    return {agency.agency_id: frozenset(agency.regions_served) for agency in load_directory(directory_path)}


@dataclass(frozen=True)
class Outcome:
    record: dict[str, Any]
    assignment: events_pb2.EventEnvelope | None


def _resolved(decision: Decision) -> list:
    """What the resolver said, to tell whether a later event changed it (JSON-friendly)."""
    return [
        decision.region,
        decision.handover_to or "",
        decision.rule,
        decision.bound_nowhere,
        decision.no_programme_accepts,
    ]


class Assigner:
    def __init__(self, resolver: Resolver, agency_regions: Mapping[str, frozenset[str]]):
        self.resolver = resolver
        # A copy of its own: the directory feed updates it (adapters/directory_follow.py).
        self.agency_regions: dict[str, frozenset[str]] = dict(agency_regions)

    # ------------------------------------------------------------------ referral events

    def on_referral(self, envelope: events_pb2.EventEnvelope, record: Mapping[str, Any]) -> Outcome:
        referral = envelope.referral
        state = r.CaseState.from_dict(record.get("state"))
        service = self._service(referral)
        when = envelope.occurred_at.ToDatetime().date().isoformat()
        if not referral.referral_id:
            raise Refused("referral.referral_id: must not be empty")
        if not referral.event_type:
            raise Refused("referral.event_type: must not be empty")

        # The assignment explains itself in the case's languages only (and Dutch), not all five.
        explained_in = explanation_languages(referral.languages)

        def decide(current_region: str | None) -> Decision:
            # The domain objects straight from the proto; the explanation is written only if an
            # assignment is sent (most lifecycle events send none).
            try:
                request = request_from_proto(
                    asked_in=referral.asked_in,
                    service=service,
                    decision_date=when,
                    current_region=current_region,
                    facts=referral.facts,
                )
                return self.resolver.decide_request(request)
            except InvalidInput as problem:
                raise Refused(f"resolver refused the facts: {problem}") from None

        # The state follows the ordinary rules only (never the override), so that it does not
        # depend on whether an override on the other topic was read before or after this event.
        known = state.ordinary_region is not None
        ordinary = decide(state.ordinary_region)
        redecide = r.Redecide(referral.event_type, ordinary.region, ordinary.handover_to)
        s = None
        if referral.event_type == "ReferralAccepted" and (referral.handover or referral.previous_holder):
            acceptor = referral.holder or referral.receiver
            accepted = (
                r.step(state, r.HandoverAccepted(self.agency_regions.get(acceptor, frozenset()))) if known else None
            )
            if accepted is not None and accepted.emit:
                s = accepted
        elif referral.event_type == "ReferralDeclined" and referral.handover and known:
            s = r.step(state, r.HandoverRefused())
        if s is None:
            s = r.step(state, redecide)

        if known and s.after.base_region != state.base_region:
            ordinary = decide(s.after.base_region)  # a handover moved it: decide from there
        after = r.propose(s.after, ordinary.handover_to)
        # What the assignment explains: the region responsible now, the override's if one is in force.
        decision = ordinary if after.override is None else decide(after.responsible)
        rule = s.rule or decision.rule
        history = list(record.get("history", []))
        entry = self._entry(
            envelope,
            trigger=referral.event_type,
            region=after.responsible,
            previous=state.responsible,
            handover_to=decision.handover_to or "",
            rule=rule,
            decision=decision,
            referral_id=referral.referral_id,
            reason_code=after.override.reason_code if after.override is not None else "",
        )
        due = s.emit and (
            not state.known
            or s.rule is not None
            or s.moved
            or referral.event_type in DECIDING_EVENTS
            or record.get("resolved") != _resolved(decision)
        )
        new_record = self._record(
            record,
            envelope,
            after,
            history + ([entry] if due else []),
            referral_id=referral.referral_id,
            sender=referral.sender,
            receiver=referral.pending_receiver or referral.receiver,
        )
        new_record["resolved"] = _resolved(decision)
        if not due:
            return Outcome(new_record, None)
        assignment = assignment_from(
            decision,
            explained_in,
            referral_id=referral.referral_id,
            previous_region=state.responsible or "",
            service=service,
            sender=referral.sender,
            receiver=referral.pending_receiver or referral.receiver,
            languages=list(referral.languages),
            caused_by_event_id=envelope.event_id,
            trigger=referral.event_type,
            reason_code=entry["reason_code"],
        )
        assert after.responsible is not None and rule is not None  # a decision always names both
        assignment.responsible_region = after.responsible
        assignment.rule = rule
        return _sent(new_record, envelope, self._wrap(envelope, assignment))

    # ------------------------------------------------------------------ overrides

    def on_override(self, envelope: events_pb2.EventEnvelope, record: Mapping[str, Any]) -> Outcome:
        override = envelope.override
        state = r.CaseState.from_dict(record.get("state"))
        if not override.reason_code.strip():
            raise Refused("override.reason_code: must not be empty")
        if override.lift:
            trigger: r.Trigger = r.OverrideLifted(override.reason_code)
        else:
            if not override.region.strip():
                raise Refused("override.region: must name a region (or set lift=true)")
            if self.resolver.policy.region(override.region) is None:
                raise Refused(
                    f"override.region: unknown region {override.region!r} in policy {self.resolver.policy.version}"
                )
            trigger = r.OverrideSet(override.region, override.reason_code)
        try:
            s = r.step(state, trigger)
        except r.NotYetResponsible:
            raise Refused("override.lift: the case has no responsible region, nothing to lift") from None
        referral_id = override.referral_id or record.get("referral_id", "")
        history = list(record.get("history", []))
        if not s.emit:
            return Outcome(self._record(record, envelope, s.after, history), None)
        handover_to = "" if s.after.override is not None else (s.after.proposed or "")
        trigger_name = LIFT_TRIGGER if override.lift else OVERRIDE_TRIGGER
        entry = self._entry(
            envelope,
            trigger=trigger_name,
            region=s.after.responsible,
            previous=state.responsible,
            handover_to=handover_to,
            rule=s.rule,
            decision=None,
            referral_id=referral_id,
            reason_code=override.reason_code,
        )
        assignment = events_pb2.AssignmentEvent(
            referral_id=referral_id,
            responsible_region=s.after.responsible or "",
            handover_to=handover_to,
            rule=s.rule or "",
            previous_region=state.responsible or "",
            policy_version=self.resolver.policy.version,
            sender=record.get("sender", ""),
            receiver=record.get("receiver", ""),
            caused_by_event_id=envelope.event_id,
            trigger=trigger_name,
            reason_code=override.reason_code,
        )
        new_record = self._record(record, envelope, s.after, history + [entry])
        return _sent(new_record, envelope, self._wrap(envelope, assignment))

    # ------------------------------------------------------------------ helpers

    def _service(self, referral: events_pb2.ReferralEvent) -> str:
        # A referral about taxes or insurance is decided by the rules of the service its need
        # domain maps to (shared reference data), so it gets a responsible region like any other.
        return binding_service(tuple(referral.need_domains), self.resolver.known_services)

    @staticmethod
    def _wrap(cause: events_pb2.EventEnvelope, assignment: events_pb2.AssignmentEvent) -> events_pb2.EventEnvelope:
        return envelopes.new_envelope(
            case_id=cause.case_id,
            producer=SERVICE,
            event_id=envelopes.derived_id("assignment", cause.event_id),
            assignment=assignment,
        )

    def _entry(
        self,
        envelope,
        *,
        trigger,
        region,
        previous,
        handover_to,
        rule,
        decision: Decision | None,
        referral_id,
        reason_code,
    ) -> dict:
        """A history entry; `decision` None for an override (no resolver decision behind it)."""
        return {
            "at": envelope.occurred_at.ToDatetime().replace(tzinfo=UTC).isoformat(),
            "event_id": envelopes.derived_id("assignment", envelope.event_id),
            "caused_by": envelope.event_id,
            "trigger": trigger,
            "referral_id": referral_id,
            "region": region,
            "previous_region": previous or "",
            "handover_to": handover_to,
            "rule": rule,
            "reason_code": reason_code,
            "bound_nowhere": decision is not None and decision.bound_nowhere,
            "no_programme_accepts": decision is not None and decision.no_programme_accepts,
            "policy_version": decision.policy_version if decision is not None else self.resolver.policy.version,
        }

    @staticmethod
    def _record(
        record: Mapping[str, Any],
        envelope,
        state: r.CaseState,
        history: list[dict],
        *,
        referral_id: str | None = None,
        sender: str | None = None,
        receiver: str | None = None,
    ) -> dict:
        seen = [*record.get("seen", []), envelope.event_id][-SEEN_LIMIT:]
        referral_ids = set(record.get("referral_ids", []))
        if referral_id:
            referral_ids.add(referral_id)
        # Every agency that sent or received a referral of the case (who may read its assignment).
        parties = set(record.get("parties", [])) | {agency for agency in (sender, receiver) if agency}
        return {
            "state": state.to_dict(),
            "referral_id": referral_id or record.get("referral_id", ""),
            "referral_ids": sorted(referral_ids),
            "sender": sender if sender is not None else record.get("sender", ""),
            "receiver": receiver if receiver is not None else record.get("receiver", ""),
            "parties": sorted(parties),
            "seen": seen,
            "history": history,
            "sent": list(record.get("sent", [])),
            "resolved": record.get("resolved"),
            "updated_at": datetime.now(UTC).isoformat(),
        }


def _sent(record: dict, cause: events_pb2.EventEnvelope, assignment: events_pb2.EventEnvelope) -> Outcome:
    """The outcome, with the assignment's bytes kept in the record under its cause's id."""
    raw = base64.b64encode(envelopes.encode(assignment)).decode()
    record["sent"] = [*record.get("sent", []), {"caused_by": cause.event_id, "envelope": raw}][-SENT_LIMIT:]
    return Outcome(record, assignment)


def already_seen(record: Mapping[str, Any], event_id: str) -> bool:
    return event_id in record.get("seen", ())


def sent_for(record: Mapping[str, Any], event_id: str) -> list[bytes]:
    """The assignment(s) sent for an event already handled, as sent (empty if none, or too old).

    The case's record is written before the broker has the assignment, and the input is
    committed only after the producer flushed: a crash in between leaves a record that names the
    event as handled while its assignment may be lost. The redelivered event sends these bytes
    again, under the same id; receivers deduplicate on it."""
    return [base64.b64decode(item["envelope"]) for item in record.get("sent", ()) if item.get("caused_by") == event_id]


def assignment_from_entry(entry: Mapping[str, Any], record: Mapping[str, Any]) -> events_pb2.AssignmentEvent:
    """A stored history entry back as an AssignmentEvent (compact: no candidates, no explanation)."""
    return events_pb2.AssignmentEvent(
        referral_id=entry.get("referral_id", ""),
        responsible_region=entry.get("region", ""),
        handover_to=entry.get("handover_to", ""),
        rule=entry.get("rule", ""),
        bound_nowhere=bool(entry.get("bound_nowhere")),
        no_programme_accepts=bool(entry.get("no_programme_accepts")),
        previous_region=entry.get("previous_region", ""),
        policy_version=entry.get("policy_version", ""),
        caused_by_event_id=entry.get("caused_by", ""),
        trigger=entry.get("trigger", ""),
        reason_code=entry.get("reason_code", ""),
    )
