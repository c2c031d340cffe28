"""Coordinator actions and their events are one transaction (the action outbox), and the relay
publishes every recorded event, keeping what it could not publish for the next round.

- acknowledging, taking and resolving an alert record the AlertAction for the region service's
  ladder with the alert's change; reassigning records the CoordinatorOverride;
- a refused action records no event;
- a publish that fails (the broker away) leaves the event recorded, unpublished and counted in
  the backlog; the next round publishes it, once, and the backlog returns to 0;
- events already acknowledged by the broker are marked even when a later one fails.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meshkernel import envelope as envelopes
from meshkernel.topics import OVERRIDES
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.action_relay import ActionRelay
from services.notify.adapters.store import NotifyStore, PendingEvent
from services.notify.application import AlertDesk
from services.notify.domain.alerts import AlertError, Coordinator

REGIONS = {"GM0518": "Haaglanden", "GM0344": "Utrecht"}
HAGUE = Coordinator("coord-gm0518", "GM0518")
UTRECHT = Coordinator("coord-gm0344", "GM0344")
NATIONAL = Coordinator("coord-national", "NATIONAL")


def _escalation(case_id: str, level=events_pb2.REGION_COORDINATOR) -> events_pb2.EventEnvelope:
    now = datetime.now(UTC)
    payload = events_pb2.EscalationEvent(
        escalation_id=envelopes.derived_id("escalation", case_id, str(level)),
        referral_id=f"ref-{case_id}",
        region="GM0518",
        level=level,
        rule="not_accepted_in_time",
        history=[events_pb2.StatusAt(status=common_pb2.REQUESTED)],
    )
    payload.history[0].at.FromDatetime(now - timedelta(hours=30))
    payload.fired_at.FromDatetime(now)
    return envelopes.new_envelope(case_id=case_id, producer="test", event_id=payload.escalation_id, escalation=payload)


@pytest.fixture
def store(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    yield store
    store.close()


async def _raised(desk: AlertDesk, case_id: str, level=events_pb2.REGION_COORDINATOR) -> str:
    alert = await desk.record_escalation(_escalation(case_id, level))
    assert alert is not None
    return alert.escalation_id


def _payloads(store: NotifyStore) -> list[events_pb2.EventEnvelope]:
    return [envelopes.decode(event.envelope) for event in store.unpublished_events()]


async def test_ladder_actions_record_their_alert_action_with_the_change(store):
    desk = AlertDesk(store, REGIONS)
    woken = []
    desk.events_recorded = lambda: woken.append(True)
    escalation_id = await _raised(desk, "case-1")

    await desk.act(HAGUE, escalation_id, "take", channel="web")
    await desk.act(HAGUE, escalation_id, "resolve", channel="web", code="HELP_STARTED")

    recorded = _payloads(store)
    assert [(e.case_id, e.alert_action.escalation_id, e.alert_action.action) for e in recorded] == [
        ("case-1", escalation_id, "TAKEN"),
        ("case-1", escalation_id, "RESOLVED"),
    ]
    assert recorded[1].alert_action.outcome_code == "HELP_STARTED"
    assert [event.key for event in store.unpublished_events()] == [b"case-1", b"case-1"]
    assert {event.topic for event in store.unpublished_events()} == {OVERRIDES.base_name}
    assert store.get_alert(escalation_id).alert.state.value == "RESOLVED"
    assert len(woken) == 2


async def test_a_reassignment_records_the_override_for_the_region_service(store):
    desk = AlertDesk(store, REGIONS)
    escalation_id = await _raised(desk, "case-2", events_pb2.NATIONAL_COORDINATOR)

    await desk.act(NATIONAL, escalation_id, "reassign", channel="grpc", code="CLIENT_MOVED", region="GM0344")

    [override] = _payloads(store)
    assert override.WhichOneof("payload") == "override"
    assert (override.override.region, override.override.reason_code, override.override.coordinator) == (
        "GM0344",
        "CLIENT_MOVED",
        "coord-national",
    )
    assert override.override.referral_id == "ref-case-2"


async def test_a_refused_action_records_no_event(store):
    desk = AlertDesk(store, REGIONS)
    escalation_id = await _raised(desk, "case-3")

    with pytest.raises(AlertError):
        await desk.act(UTRECHT, escalation_id, "acknowledge", channel="web")

    assert store.unpublished_events() == []
    assert store.get_alert(escalation_id).alert.state.value == "OPEN"


class FlakyBroker:
    """Acknowledges records while `up`; refuses them (as a broker that is away) otherwise."""

    def __init__(self, up: bool = True, refuse_after: int | None = None):
        self.up = up
        self.refuse_after = refuse_after
        self.received: list[str] = []

    async def publish(self, event: PendingEvent) -> None:
        if not self.up or (self.refuse_after is not None and len(self.received) >= self.refuse_after):
            raise ConnectionError("broker unreachable")
        self.received.append(envelopes.decode(event.envelope).event_id)


async def test_an_action_recorded_while_the_broker_is_away_is_published_once_when_it_is_back(store):
    desk = AlertDesk(store, REGIONS)
    escalation_id = await _raised(desk, "case-4")
    broker = FlakyBroker(up=False)
    relay = ActionRelay(store, broker.publish)

    await desk.act(HAGUE, escalation_id, "acknowledge", channel="grpc")
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert relay.backlog == 1 and broker.received == []

    broker.up = True
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0  # published once, not again
    assert broker.received == [envelopes.derived_id("alert-action", escalation_id, "ACKNOWLEDGED")]
    assert relay.backlog == 0 and store.unpublished_events() == []


async def test_events_the_broker_acknowledged_stay_published_when_a_later_one_fails(store):
    desk = AlertDesk(store, REGIONS)
    first, second = await _raised(desk, "case-5"), await _raised(desk, "case-6")
    await desk.act(HAGUE, first, "acknowledge", channel="web")
    await desk.act(HAGUE, second, "acknowledge", channel="web")
    broker = FlakyBroker(refuse_after=1)
    relay = ActionRelay(store, broker.publish)

    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert len(broker.received) == 1 and relay.backlog == 1

    broker.refuse_after = None
    await relay.publish_pending()
    assert len(broker.received) == len(set(broker.received)) == 2
    assert relay.backlog == 0
