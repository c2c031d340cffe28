"""The notify worker on the real broker: escalations become alerts on the gRPC stream, acting
on them changes their state (and is logged), a reassignment becomes an override event, and a
client message goes out in the client's language with contact details that stay sealed."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import grpc
import pytest
from kafka import KafkaConsumer

from meshkernel.envelope import decode
from meshkernel.topics import ALL_TOPICS, ASSIGNMENTS, ESCALATIONS, NOTIFICATIONS, OVERRIDES, REFERRAL_EVENTS
from referralmesh.v1 import events_pb2, notify_service_pb2_grpc
from referralmesh.v1 import notify_service_pb2 as api
from services.notify.adapters.store import NotifyStore
from services.notify.adapters.streams import _assignment_from, notification_envelope
from services.notify.domain.routing import route
from services.notify.paths import NotifyPaths
from tests.integration.notify.notify_kit import (
    DEMO_PASSWORD,
    assignment,
    escalation,
    new_case,
    referral_with_contact,
    wait_until,
)

pytestmark = pytest.mark.kafka


class Stream:
    """Reads a WatchAlerts stream on a thread, so the test can produce and wait."""

    def __init__(self, stub, request, coordinator: str = "coord-national"):
        self.call = stub.WatchAlerts(request, metadata=[("x-mesh-coordinator", coordinator)])
        self.alerts: list[api.Alert] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for alert in self.call:
                self.alerts.append(alert)
        except grpc.RpcError:
            pass

    def wait_for(self, predicate, timeout=30.0):
        return wait_until(lambda: [a for a in self.alerts if predicate(a)], timeout)

    def close(self):
        self.call.cancel()


@pytest.fixture(scope="module")
def stub(notify):
    channel = grpc.insecure_channel(notify.config.notify_grpc_address)
    grpc.channel_ready_future(channel).result(timeout=30)
    yield notify_service_pb2_grpc.NotifyServiceStub(channel)
    channel.close()


def _store(notify) -> NotifyStore:
    return NotifyStore.open(NotifyPaths.of(notify.config).database_url)


def test_an_escalation_appears_on_the_filtered_stream_and_acknowledging_changes_its_state(notify, producer, stub):
    case_id, other_case = new_case(), new_case()
    stream = Stream(stub, api.WatchAlertsRequest(regions=["GM0518"], levels=[events_pb2.REGION_COORDINATOR]))
    try:
        producer.send(ESCALATIONS, escalation(other_case, region="GM0363"))  # another region: filtered out
        producer.send(ESCALATIONS, escalation(case_id, region="GM0518"))
        producer.send(ESCALATIONS, escalation(case_id, region="GM0518"))  # redelivery: one alert only
        [raised] = stream.wait_for(lambda a: a.case_id == case_id)
        assert raised.state == api.OPEN and raised.escalation.rule == "not_accepted_in_time"
        assert raised.escalation.region == "GM0518" and raised.history[0].action == "RAISED"

        with pytest.raises(grpc.RpcError) as refused:
            stub.AcknowledgeAlert(
                api.AcknowledgeAlertRequest(escalation_id=raised.escalation.escalation_id),
                metadata=[("x-mesh-coordinator", "coord-gm0344")],
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        acked = stub.AcknowledgeAlert(
            api.AcknowledgeAlertRequest(escalation_id=raised.escalation.escalation_id),
            metadata=[("x-mesh-coordinator", "coord-gm0518")],
        )
        assert acked.state == api.ACKNOWLEDGED and acked.history[-1].actor == "coord-gm0518"
        [_update] = stream.wait_for(lambda a: a.case_id == case_id and a.state == api.ACKNOWLEDGED)
        assert not [a for a in stream.alerts if a.case_id == other_case]
    finally:
        stream.close()

    # Resumable: from the cursor of the raise, the stream replays what came after, and only that.
    resumed = Stream(stub, api.WatchAlertsRequest(cursor=raised.cursor, regions=["GM0518"]))
    try:
        [again] = resumed.wait_for(lambda a: a.case_id == case_id)
        assert again.state == api.ACKNOWLEDGED and int(again.cursor) > int(raised.cursor)
    finally:
        resumed.close()

    entries = _store(notify).access_entries(case_id)
    assert [(e["action"], e["actor"], e["result"]) for e in entries] == [
        ("ALERT_RAISED", "system", "ok"),
        ("ACKNOWLEDGE", "coord-gm0344", "refused:out_of_scope"),
        ("ACKNOWLEDGE", "coord-gm0518", "ok"),
    ]

    # The region service's ladder hears of the acknowledgement, so the alert stops climbing.
    consumer = KafkaConsumer(
        notify.config.topic(OVERRIDES.base_name),
        bootstrap_servers=notify.config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        consumer_timeout_ms=15000,
    )
    actions = [decode(record.value) for record in consumer if record.key == case_id.encode()][:1]
    consumer.close()
    [told] = actions
    assert told.WhichOneof("payload") == "alert_action"
    assert (told.alert_action.escalation_id, told.alert_action.action, told.alert_action.coordinator) == (
        raised.escalation.escalation_id,
        "ACKNOWLEDGED",
        "coord-gm0518",
    )


async def test_a_coordinator_reassigns_in_the_dashboard_and_an_override_event_goes_to_the_region_service(
    notify, producer
):
    case_id = new_case()
    producer.send(ESCALATIONS, escalation(case_id, region="GM0518", level=events_pb2.NATIONAL_COORDINATOR))
    store = _store(notify)
    alert = wait_until(lambda: [s.alert for s in store.alerts() if s.alert.case_id == case_id])[0]

    # unsafe=True: the client jar keeps cookies of an IP-address host (127.0.0.1)
    async with aiohttp.ClientSession(base_url=notify.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post("/login", data={"username": "coord-national", "password": "wrong"}) as response:
            assert response.status == 401
        async with http.post("/login", data={"username": "coord-national", "password": DEMO_PASSWORD}) as response:
            assert response.status == 200 and str(response.url).endswith("/dashboard")
            page = await response.text()
        assert case_id in page
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        async with http.post(
            f"/dashboard/alerts/{alert.escalation_id}/reassign", data={"region": "GM0344", "code": "CLIENT_MOVED"}
        ) as response:
            assert response.status == 403  # no form token: refused
        async with http.post(
            f"/dashboard/alerts/{alert.escalation_id}/reassign",
            data={"region": "GM0344", "code": "CLIENT_MOVED", "csrf": csrf},
        ) as response:
            assert "result=done" in str(response.url)

    consumer = KafkaConsumer(
        notify.config.topic(OVERRIDES.base_name),
        bootstrap_servers=notify.config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        consumer_timeout_ms=15000,
    )
    overrides = []
    for record in consumer:
        if record.key == case_id.encode():
            overrides.append(decode(record.value))
            break
    consumer.close()
    [override] = overrides
    assert (override.override.region, override.override.reason_code, override.override.coordinator) == (
        "GM0344",
        "CLIENT_MOVED",
        "coord-national",
    )
    assert override.override.referral_id == f"ref-{case_id}"
    moved = store.get_alert(alert.escalation_id).alert
    assert moved.region == "GM0344" and moved.history[-1].action.value == "REASSIGNED"
    assert [e["action"] for e in store.access_entries(case_id)][-1] == "REASSIGN"


def test_the_client_message_arrives_in_their_language_and_contact_details_never_leave_the_seal(notify, producer, stub):
    marker_phone = f"+31 6 {uuid.uuid4().int % 10**8:08d}"
    marker_digits = re.sub(r"\D", "", marker_phone)
    case_id = new_case()
    sealed = stub.SealContact(
        api.SealContactRequest(case_id=case_id, channel=api.SMS, address=marker_phone),
        metadata=[("x-mesh-dev-agency", "exit-the-hague")],
    )
    assert marker_digits.encode() not in sealed.ciphertext
    producer.send(REFERRAL_EVENTS, referral_with_contact(case_id, sealed))
    producer.send(ASSIGNMENTS, assignment(case_id, languages=("pl", "en")))

    outbox = NotifyPaths.of(notify.config).client_outbox
    store = _store(notify)
    [client] = wait_until(
        lambda: [d for d in store.deliveries(case_id) if d.audience == "CLIENT" and d.status == "delivered"]
    )
    [message] = [
        json.loads(line)
        for line in outbox.read_text().splitlines()
        if json.loads(line)["notification_id"] == client.notification_id
    ]
    assert message["language"] == "pl" and message["template"] == "client_responsible_region"
    # Places by their Dutch name; the receiving agency by its neutral client display name.
    assert "Den Haag" in message["text"] and "The Hague" not in message["text"]
    assert "Harbour Light Utrecht" in message["text"] and "Harbour Light Shelter Utrecht" not in message["text"]
    assert marker_digits[-2:] in message["to"] and marker_digits not in json.dumps(message)

    # The marker appears nowhere: not in the service log, any topic, or the notify database.
    haystacks = {"log": notify.log_file.read_bytes(), "database": b""}
    db_path = NotifyPaths.of(notify.config).database_url.split("///", 1)[1]
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            haystacks["database"] += Path(db_path + suffix).read_bytes()
    consumer = KafkaConsumer(
        *[notify.config.topic(spec.base_name) for spec in ALL_TOPICS],
        bootstrap_servers=notify.config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        consumer_timeout_ms=3000,
    )
    haystacks["kafka"] = b"".join((r.value or b"") + (r.key or b"") for r in consumer)
    consumer.close()
    assert haystacks["kafka"] and sealed.ciphertext in haystacks["kafka"]  # only ciphertext travels
    for where, data in haystacks.items():
        for needle in (marker_phone.encode(), marker_digits.encode()):
            assert needle not in data, f"contact details leaked into the {where}"

    # The agency sees what became of the message, as codes; an agency not party to the case does not.
    listed = stub.ListClientMessages(
        api.ListClientMessagesRequest(case_id=case_id), metadata=[("x-mesh-dev-agency", "exit-the-hague")]
    )
    [outcome] = listed.messages
    assert (outcome.notification_id, outcome.template, outcome.language) == (
        client.notification_id,
        "client_responsible_region",
        "pl",
    )
    assert (outcome.channel, outcome.status, outcome.attempts) == ("sms", "sent", 1)
    assert marker_digits.encode() not in listed.SerializeToString()
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListClientMessages(
            api.ListClientMessagesRequest(case_id=case_id), metadata=[("x-mesh-dev-agency", "not-a-party")]
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Erasure: the key is destroyed; nothing can open the contact any more.
    erased = stub.EraseClient(
        api.EraseClientRequest(case_id=case_id), metadata=[("x-mesh-dev-agency", "exit-the-hague")]
    )
    assert erased.key_destroyed is True
    assert store.case(case_id).contact_ciphertext is None
    assert [e["action"] for e in store.access_entries(case_id)][:1] == ["SEAL_CONTACT"]
    assert "ERASE_CLIENT" in [e["action"] for e in store.access_entries(case_id)]
    # ... and the region service is told to forget the case (tombstones in its tables).
    consumer = KafkaConsumer(
        notify.config.topic(OVERRIDES.base_name),
        bootstrap_servers=notify.config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        consumer_timeout_ms=15000,
    )
    erasures = []
    for record in consumer:
        if record.key == case_id.encode() and decode(record.value).WhichOneof("payload") == "client_erased":
            erasures.append(decode(record.value))
            break
    consumer.close()
    assert [e.client_erased.requested_by for e in erasures] == ["exit-the-hague"]


def _notifications_of(notify, case_id: str, wanted: set[str], timeout: float = 30.0) -> list:
    """Every NotificationEvent of the case on the topic, read until all `wanted` ids are there."""
    consumer = KafkaConsumer(
        notify.config.topic(NOTIFICATIONS.base_name),
        bootstrap_servers=notify.config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        consumer_timeout_ms=3000,
    )
    emitted: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            emitted += [decode(r.value) for r in consumer if r.key == case_id.encode()]
            if wanted <= {e.event_id for e in emitted}:
                break
    finally:
        consumer.close()
    return emitted


def test_agency_notifications_are_emitted_and_recorded_once(notify, producer):
    case_id = new_case()
    event = assignment(case_id)
    producer.send(ASSIGNMENTS, event)
    producer.send(ASSIGNMENTS, event)  # redelivered
    store = _store(notify)
    expected = ["client_bound_nowhere", "referral_assigned", "responsible_region_named"]
    recorded = wait_until(lambda: len(store.deliveries(case_id)) >= 3 and store.deliveries(case_id))
    time.sleep(1.0)
    assert sorted(d.template for d in store.deliveries(case_id)) == expected
    # No webhook configured for these agencies, coordinators read the dashboard: recorded, not sent.
    assert {d.status for d in store.deliveries(case_id)} == {"skipped"}
    ids = {d.notification_id for d in store.deliveries(case_id)}
    emitted = _notifications_of(notify, case_id, ids)
    # Once by id: the redelivered input sends the recorded events again, under the same ids and
    # with the same bytes (receivers deduplicate on the id).
    by_id: dict[str, set[bytes]] = {}
    for e in emitted:
        by_id.setdefault(e.event_id, set()).add(e.SerializeToString(deterministic=True))
    assert set(by_id) == ids and all(len(contents) == 1 for contents in by_id.values())
    assert sorted({e.event_id: e.notification.template for e in emitted}.values()) == expected
    assert recorded


def test_a_notification_recorded_before_a_crash_is_sent_on_redelivery(notify, producer):
    """The loss window without SIGKILL timing: the worker recorded an assignment's notifications
    in its store, and died before the producer flushed their events and before the input's offset
    was committed. That state is made here by recording them; the input read again must then
    put every recorded notification on the topic, each once by id, and record nothing twice."""
    case_id = new_case()
    event = assignment(case_id)
    store = _store(notify)
    recorded: dict[str, bytes] = {}
    for notification in route(_assignment_from(event)):
        raw = notification_envelope(
            notification,
            case_id=case_id,
            referral_id=event.assignment.referral_id,
            caused_by=event.event_id,
            responsible_region=event.assignment.responsible_region,
        )
        assert store.record_notification(
            notification_id=notification.notification_id,
            case_id=case_id,
            audience=notification.audience.value,
            recipient=notification.recipient,
            template=notification.template,
            language=notification.language,
            channel="none",
            envelope=raw,
        )
        recorded[notification.notification_id] = raw

    producer.send(ASSIGNMENTS, event)  # the input whose offset the dead worker never committed

    emitted = _notifications_of(notify, case_id, set(recorded))
    assert {e.event_id for e in emitted} == set(recorded)
    assert all(e == decode(recorded[e.event_id]) for e in emitted)  # as recorded
    assert len(store.deliveries(case_id)) == len(recorded) == 3
