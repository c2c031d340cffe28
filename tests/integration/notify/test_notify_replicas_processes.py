"""Two `mesh serve notify` processes on one PostgreSQL and one broker (one consumer group, one
key-encryption key), started at the same moment:

- a contact sealed through replica A reaches the client once, whichever replica consumes the
  events, and EraseClient through replica B destroys the key both replicas use;
- every alert reaches the coordinators' stream on both replicas, whichever replica consumed
  the escalation;
- a coordinator signed in on A's dashboard is served by B's.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter

import grpc
import psycopg
import pytest

from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, REFERRAL_EVENTS
from referralmesh.v1 import notify_service_pb2 as api
from referralmesh.v1 import notify_service_pb2_grpc
from services.notify.adapters.kek_file import LocalKeyFile
from services.notify.adapters.keystore import ContactUnavailable, KeyStore, KeyTable
from services.notify.adapters.store import NotifyStore
from tests.integration.notify.notify_kit import (
    DEMO_PASSWORD,
    NotifyProcess,
    Producer,
    assignment,
    escalation,
    new_case,
    notify_env,
    referral_with_contact,
    wait_until,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def database(postgres_url):
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    name = f"notify_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def replicas(kafka_bootstrap, database, tmp_path_factory):
    shared = tmp_path_factory.mktemp("notify-shared")
    kek = shared / "kek.key"
    LocalKeyFile.create(kek)
    first = notify_env(
        kafka_bootstrap,
        tmp_path_factory.mktemp("notify-a"),
        MESH_NOTIFY_DATABASE_URL=database,
        MESH_NOTIFY_KEK_PATH=str(kek),
    )
    second = notify_env(
        kafka_bootstrap,
        tmp_path_factory.mktemp("notify-b"),
        MESH_NOTIFY_DATABASE_URL=database,
        MESH_NOTIFY_KEK_PATH=str(kek),
        MESH_TOPIC_PREFIX=first["MESH_TOPIC_PREFIX"],
    )
    processes = [NotifyProcess(env, base) for env, base in ((first, shared / "logs-a"), (second, shared / "logs-b"))]
    prepare_kafka(processes[0].config, "notify-test", give_up_after=60)
    try:
        # Both spawned at once, from this thread (a child's parent-death signal follows the
        # thread that started it), so they set up the schema and join the group together.
        for process in processes:
            process.stack.start("notify")
        for process in processes:
            assert wait_until(lambda process=process: _healthy(process), timeout=120), process.log_file.read_text()[
                -3000:
            ]
        yield processes, LocalKeyFile.load(kek), database
    finally:
        for process in processes:
            process.stop()


def _healthy(process: NotifyProcess) -> bool:
    assert not process.stack.crashed(), process.log_file.read_text()[-3000:]
    try:
        with urllib.request.urlopen(process.base_url + "/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _stub(process: NotifyProcess):
    channel = grpc.insecure_channel(process.config.notify_grpc_address)
    grpc.channel_ready_future(channel).result(timeout=30)
    return channel, notify_service_pb2_grpc.NotifyServiceStub(channel)


def test_sealed_through_a_delivered_once_and_erased_through_b(replicas):
    (a, b), kek, database = replicas
    channel_a, on_a = _stub(a)
    channel_b, on_b = _stub(b)
    store = NotifyStore.open(database)
    keys = KeyStore(KeyTable(store.engine), kek)
    producer = Producer(a.config)
    try:
        case_id = new_case()
        sealed = on_a.SealContact(
            api.SealContactRequest(case_id=case_id, channel=api.SMS, address="+31 6 1234 5678"),
            metadata=[("x-mesh-dev-agency", "exit-the-hague")],
        )
        producer.send(REFERRAL_EVENTS, referral_with_contact(case_id, sealed))
        producer.send(ASSIGNMENTS, assignment(case_id))
        delivered = wait_until(
            lambda: [d for d in store.deliveries(case_id) if d.audience == "CLIENT" and d.status == "delivered"],
            timeout=90,
        )
        assert len(delivered) == 1
        assert keys.open(case_id, sealed).address == "+31 6 1234 5678"

        erased = on_b.EraseClient(
            api.EraseClientRequest(case_id=case_id), metadata=[("x-mesh-dev-agency", "exit-the-hague")]
        )
        assert erased.key_destroyed
        with pytest.raises(ContactUnavailable):
            keys.open(case_id, sealed)
        again = on_a.EraseClient(
            api.EraseClientRequest(case_id=case_id), metadata=[("x-mesh-dev-agency", "exit-the-hague")]
        )
        assert not again.key_destroyed  # replica A finds the key gone as well
    finally:
        producer.close()
        keys.close()
        store.close()
        channel_a.close()
        channel_b.close()


def test_every_alert_reaches_the_stream_on_both_replicas_once(replicas):
    (a, b), _kek, database = replicas
    channels, streams, seen = [], [], [Counter(), Counter()]
    producer = Producer(a.config)
    store = NotifyStore.open(database)
    try:
        for process, counts in zip((a, b), seen, strict=True):
            channel, stub = _stub(process)
            channels.append(channel)
            call = stub.WatchAlerts(
                api.WatchAlertsRequest(cursor=str(store.last_cursor())),
                metadata=[("x-mesh-coordinator", "coord-national")],
            )
            streams.append(call)

            def read(call=call, counts=counts):
                try:
                    for alert in call:
                        counts[alert.escalation.escalation_id] += 1
                except grpc.RpcError:
                    pass

            threading.Thread(target=read, daemon=True).start()
        cases = [new_case() for _ in range(8)]
        sent = [escalation(case_id) for case_id in cases]
        for envelope in sent:
            producer.send(ESCALATIONS, envelope)
        wanted = {envelope.escalation.escalation_id for envelope in sent}
        for counts in seen:
            assert wait_until(lambda counts=counts: wanted <= set(counts), timeout=90), "an alert is missing"
        assert all(counts[escalation_id] == 1 for counts in seen for escalation_id in wanted)
        stored = {s.alert.escalation_id for s in store.alerts()} & wanted
        assert stored == wanted
    finally:
        for call in streams:
            call.cancel()
        for channel in channels:
            channel.close()
        producer.close()
        store.close()


def test_a_coordinator_signed_in_on_a_is_served_by_b(replicas):
    (a, b), _kek, _database = replicas

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    form = urllib.parse.urlencode({"username": "coord-gm0518", "password": DEMO_PASSWORD}).encode()
    with pytest.raises(urllib.error.HTTPError) as signed_in:
        opener.open(a.base_url + "/login", data=form, timeout=30)
    assert signed_in.value.code == 303
    cookie = next(
        header.split(";", 1)[0]
        for header in signed_in.value.headers.get_all("Set-Cookie")
        if header.startswith("mesh_session=")
    )
    request = urllib.request.Request(b.base_url + "/dashboard", headers={"Cookie": cookie})
    with opener.open(request, timeout=30) as page:  # without the session: a 303 to /login (raised)
        assert page.status == 200
