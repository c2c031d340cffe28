"""The notify service's use cases: alerts from escalations, coordinator actions, the access log.

Adapters (Faust agents, the dashboard, gRPC) call these; the rules live in domain/alerts.py.
Store calls go through `store.aio` (the store's thread pool), never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from meshkernel import envelope as envelopes
from meshkernel.topics import OVERRIDES
from referralmesh.v1 import events_pb2
from services.notify.adapters.store import NotifyStore, OutgoingEvent, StoredAlert
from services.notify.domain import alerts as domain
from services.notify.domain.alerts import Alert, AlertError, Coordinator

log = logging.getLogger(__name__)

SERVICE = "notify"

# Actions the region service's escalation ladder must hear about: an acknowledged alert stops climbing.
_LADDER_ACTIONS = {"acknowledge": "ACKNOWLEDGED", "take": "TAKEN", "resolve": "RESOLVED"}


def alert_from_escalation(envelope: events_pb2.EventEnvelope, responsible_rule: str = "") -> Alert:
    escalation = envelope.escalation
    fired_at = (
        escalation.fired_at.ToDatetime(tzinfo=UTC)
        if escalation.HasField("fired_at")
        else envelope.occurred_at.ToDatetime(tzinfo=UTC)
    )
    started = [step.at.ToDatetime(tzinfo=UTC) for step in escalation.history if step.HasField("at")]
    return domain.raise_alert(
        Alert(
            escalation_id=escalation.escalation_id or envelope.event_id,
            case_id=envelope.case_id,
            referral_id=escalation.referral_id,
            region=escalation.region,
            level=events_pb2.EscalationLevel.Name(escalation.level),
            rule=escalation.rule,
            fired_at=fired_at,
            case_started_at=min(started) if started else fired_at,
            responsible_rule=responsible_rule,
        )
    )


class AlertDesk:
    def __init__(
        self,
        store: NotifyStore,
        regions: dict[str, str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.regions = regions
        self.clock = clock
        # Called after an action recorded events for the region service (wakes the action relay).
        self.events_recorded: Callable[[], None] = lambda: None
        self.changed = asyncio.Event()  # wakes live views in this process; others poll

    def _notify_change(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def alerts_changed(self) -> None:
        """Alerts were recorded elsewhere (the worker's batches, adapters/intake.py): wake the live views."""
        self._notify_change()

    async def record_escalation(self, envelope: events_pb2.EventEnvelope) -> Alert | None:
        case = await self.store.aio.case(envelope.case_id)
        alert = alert_from_escalation(envelope, case.responsible_rule if case else "")
        if not alert.region:
            raise ValueError("escalation.region: must name the responsible region")
        if not await self.store.aio.raise_alert(alert, envelope.escalation.SerializeToString()):
            return None
        self._notify_change()
        return alert

    async def visible(self, who: Coordinator) -> list[StoredAlert]:
        stored = {s.alert.escalation_id: s for s in await self.store.aio.alerts()}
        return [stored[a.escalation_id] for a in domain.visible([s.alert for s in stored.values()], who)]

    async def act(
        self, who: Coordinator, escalation_id: str, action: str, *, channel: str, code: str = "", region: str = ""
    ) -> Alert:
        """Apply one coordinator action; every attempt (allowed or not) goes to the access log."""
        stored = await self.store.aio.get_alert(escalation_id)
        case_id = stored.alert.case_id if stored else "unknown"
        why = code or action.lower()
        try:
            if stored is None:
                raise domain.AlertError("no such alert")
            now = self.clock()
            before = stored.alert
            if action == "acknowledge":
                after = domain.acknowledge(before, who, now)
            elif action == "take":
                after = domain.take(before, who, now)
            elif action == "reassign":
                after = domain.reassign(before, who, now, region, code, frozenset(self.regions))
            elif action == "resolve":
                after = domain.resolve(before, who, now, code)
            else:
                raise domain.AlertError(f"unknown action {action!r}")
        except AlertError as problem:
            await self.store.aio.log_access(
                actor=who.username,
                action=action.upper(),
                case_id=case_id,
                subject=escalation_id,
                why=why,
                channel=channel,
                result=f"refused:{problem.code}",
                organisation=who.scope,
            )
            raise
        if after is not before:
            # The alert's change and the events it sends are one transaction (the action
            # outbox); the relay publishes them, so neither a crash nor an absent broker
            # leaves a recorded action unsent.
            events = _events_of(action, after, who, escalation_id, region, code, now)
            await self.store.aio.save_alert(after, events=events)
            self._notify_change()
            if events:
                self.events_recorded()
        await self.store.aio.log_access(
            actor=who.username,
            action=action.upper(),
            case_id=after.case_id,
            subject=escalation_id,
            why=why,
            channel=channel,
            organisation=who.scope,
        )
        log.info(
            "coordinator action",
            extra={
                "case_id": after.case_id,
                "escalation_id": escalation_id,
                "action": action,
                "code": code,
                "coordinator": who.username,
            },
        )
        return after


def _events_of(
    action: str,
    after: Alert,
    who: Coordinator,
    escalation_id: str,
    region: str,
    code: str,
    now: datetime,
) -> list[OutgoingEvent]:
    """What the region service must hear of one coordinator action, on the overrides topic
    keyed by case (so a case's actions stay in order)."""
    payloads: list[tuple[str, dict]] = []
    if action == "reassign":
        # The region service decides; the override event is the request.
        override = events_pb2.CoordinatorOverride(
            referral_id=after.referral_id, region=region, reason_code=code, coordinator=who.username
        )
        event_id = envelopes.derived_id(
            "override", after.case_id, escalation_id, who.username, region, code, now.isoformat()
        )
        payloads.append((event_id, {"override": override}))
    if action in _LADDER_ACTIONS:
        ladder = events_pb2.AlertAction(
            escalation_id=escalation_id,
            referral_id=after.referral_id,
            coordinator=who.username,
            action=_LADDER_ACTIONS[action],
            outcome_code=code if action == "resolve" else "",
        )
        event_id = envelopes.derived_id("alert-action", escalation_id, ladder.action)
        payloads.append((event_id, {"alert_action": ladder}))
    events = []
    for event_id, payload in payloads:
        outgoing = envelopes.new_envelope(case_id=after.case_id, producer=SERVICE, event_id=event_id, **payload)
        events.append(
            OutgoingEvent(
                event_id=event_id,
                topic=OVERRIDES.base_name,
                key=after.case_id.encode(),
                envelope=envelopes.encode(outgoing),
            )
        )
    return events
