"""The outbox relay with several referral replicas on one PostgreSQL, parked rows and pruning.

Real PostgreSQL and a real broker: two relays publishing one outbox at the same time publish
every row exactly once and each case's rows in order; a relay killed (SIGKILL) while it holds a
claim leaves its rows to the other; a row that cannot be encoded is parked with its reason and
the case's later rows still leave; published rows are deleted after their retention.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer
from sqlalchemy import func, select, update

from meshcli.main import main as mesh
from meshkernel import envelope as envelopes
from meshkernel.config import PROJECT_ROOT, MeshSettings, settings
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import REFERRAL_EVENTS
from referralmesh.v1 import events_pb2
from services.referral.adapters.outbox_relay import OutboxRelay
from services.referral.adapters.storage import OutboxRecord, ReferralStore, make_engine, migrate
from services.referral.adapters.tables import outbox, outbox_parties
from tests.integration.referral.referral_db_kit import fresh_database

pytestmark = pytest.mark.kafka


@pytest.fixture
def pg_url(tmp_path, postgres_url_lazy):
    databases = fresh_database("postgresql", tmp_path, postgres_url_lazy)
    url = next(databases)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    next(databases, None)


@pytest.fixture
def topics(kafka_bootstrap) -> MeshSettings:
    config = MeshSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"claims{uuid.uuid4().hex[:8]}.")
    prepare_kafka(config, "outbox-claims-test", give_up_after=60)
    return config


def _event(topic: str, case_id: str, number: int) -> OutboxRecord:
    event_id = str(uuid.uuid4())
    envelope = envelopes.new_envelope(
        case_id=case_id,
        producer="referral",
        event_id=event_id,
        referral=events_pb2.ReferralEvent(referral_id=f"{case_id}-r", event_type="Test", version=number),
    )
    return OutboxRecord(event_id, topic, case_id, envelopes.encode(envelope), referral_id=f"{case_id}-r")


def _write(store: ReferralStore, records: list[OutboxRecord]) -> None:
    """One transaction per record, as use cases commit them (and so many feed sequencer runs)."""
    for record in records:
        with store._writing() as connection:
            store._append_events(connection, [record])


def _interleaved(topic: str, cases: int, per_case: int) -> list[OutboxRecord]:
    ids = [f"case-{uuid.uuid4().hex[:10]}" for _ in range(cases)]
    return [_event(topic, case_id, number) for number in range(per_case) for case_id in ids]


def _consume(config: MeshSettings, wanted: int, timeout: float = 60.0) -> list:
    consumer = KafkaConsumer(
        config.topic(REFERRAL_EVENTS.base_name),
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"claims-{uuid.uuid4()}",
    )
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < wanted:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(records)
        # Anything more (a duplicate) would arrive with the rest; one more poll to see it.
        for records in consumer.poll(timeout_ms=1000).values():
            found.extend(records)
    finally:
        consumer.close()
    return found


def _assert_each_once_in_case_order(records, written: list[OutboxRecord]) -> None:
    ids = [dict(record.headers)["event-id"].decode() for record in records]
    assert sorted(ids) == sorted(record.event_id for record in written)  # every row, exactly once
    expected: dict[str, list[str]] = defaultdict(list)
    for record in written:
        expected[record.key].append(record.event_id)
    seen: dict[str, list[str]] = defaultdict(list)
    for record in records:
        seen[record.key.decode()].append(dict(record.headers)["event-id"].decode())
    assert seen == expected  # one case's events in the order they were committed


async def _drain(relays: list[OutboxRelay], store: ReferralStore, rounds: int = 400) -> None:
    async def keep_publishing(relay: OutboxRelay) -> None:
        for _ in range(rounds):
            if await relay.publish_pending() == 0 and await asyncio.to_thread(store.outbox_backlog) == 0:
                return
            await asyncio.sleep(0)

    await asyncio.gather(*(keep_publishing(relay) for relay in relays))


async def _started(store: ReferralStore, config: MeshSettings, **options) -> OutboxRelay:
    relay = OutboxRelay(store, config.kafka_bootstrap, start_delay=0, **options)
    await relay.start()
    return relay


def test_claims_are_disjoint_and_never_split_a_case_across_relays(pg_url):
    engines = [make_engine(pg_url), make_engine(pg_url)]
    first, second = (ReferralStore(engine) for engine in engines)
    try:
        older, newer = "case-older", "case-newer"
        _write(first, [_event("t", older, 0), _event("t", newer, 0), _event("t", older, 1), _event("t", newer, 1)])
        held = first.claim_unpublished(limit=2)  # the two oldest rows: one of each case
        assert [record.key for _, record in held.rows] == [older, newer]
        other = second.claim_unpublished(limit=10)
        # The later rows are free to lock, but their cases have an older row held elsewhere.
        assert other.rows == []
        other.abandon()
        held.finish([position for position, _ in held.rows], [])
        after = second.claim_unpublished(limit=10)
        assert [(record.key, record.event_id) for _, record in after.rows] == [
            (older, after.rows[0][1].event_id),
            (newer, after.rows[1][1].event_id),
        ]
        after.finish([position for position, _ in after.rows], [])
        assert first.outbox_backlog() == 0
    finally:
        for engine in engines:
            engine.dispose()


def test_two_relays_on_one_database_publish_every_row_once_in_case_order(pg_url, topics):
    topic = topics.topic(REFERRAL_EVENTS.base_name)
    written = _interleaved(topic, cases=12, per_case=8)
    engines = [make_engine(pg_url), make_engine(pg_url)]
    stores = [ReferralStore(engine) for engine in engines]
    _write(stores[0], written)

    async def both() -> list[OutboxRelay]:
        relays = [await _started(store, topics, batch_size=7) for store in stores]
        try:
            await _drain(relays, stores[0])
        finally:
            for relay in relays:
                await relay.stop()
        return relays

    try:
        relays = asyncio.run(both())
        assert stores[0].outbox_backlog() == 0
        assert all(relay.published_total > 0 for relay in relays)  # both took part
        assert sum(relay.published_total for relay in relays) == len(written)
        _assert_each_once_in_case_order(_consume(topics, len(written)), written)
    finally:
        for engine in engines:
            engine.dispose()


_HOLD_A_CLAIM = """
import sys, time
from services.referral.adapters.storage import ReferralStore, make_engine
claim = ReferralStore(make_engine(sys.argv[1])).claim_unpublished(limit=int(sys.argv[2]))
print(len(claim.rows), flush=True)
time.sleep(600)
"""


def test_a_relay_killed_mid_batch_leaves_its_rows_to_another(pg_url, topics):
    topic = topics.topic(REFERRAL_EVENTS.base_name)
    written = _interleaved(topic, cases=5, per_case=4)
    engine = make_engine(pg_url)
    store = ReferralStore(engine)
    _write(store, written)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_CLAIM, pg_url, "6"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "6"  # it holds the six oldest rows
        held = store.claim_unpublished(limit=100)
        assert held.rows == []  # every case has its oldest row in the other relay's claim
        held.abandon()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

        async def publish_rest() -> None:
            relay = await _started(store, topics, batch_size=50)
            try:
                await _drain([relay], store)
            finally:
                await relay.stop()

        asyncio.run(publish_rest())
        assert store.outbox_backlog() == 0
        _assert_each_once_in_case_order(_consume(topics, len(written)), written)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_row_that_cannot_be_encoded_is_parked_with_its_reason_and_the_case_goes_on(
    backend, topics, tmp_path, postgres_url_lazy, monkeypatch, capsys
):
    databases = fresh_database(backend, tmp_path, postgres_url_lazy)
    url = next(databases)
    engine = make_engine(url)
    migrate(engine)
    store = ReferralStore(engine)
    topic = topics.topic(REFERRAL_EVENTS.base_name)
    case_id = f"case-{uuid.uuid4().hex[:10]}"
    first, later = _event(topic, case_id, 0), _event(topic, case_id, 2)
    garbled = OutboxRecord(str(uuid.uuid4()), topic, case_id, b"\x00 not an envelope")
    # A record larger than the producer may send: Kafka would refuse it however often it is tried.
    padded = envelopes.decode(_event(topic, case_id, 1).value)
    padded.referral.need_domains.extend(["x" * 50] * 20)
    oversized = OutboxRecord(padded.event_id, topic, case_id, envelopes.encode(padded))
    _write(store, [first, garbled, oversized, later])
    limit = len(first.value) + 200

    async def publish() -> tuple[int, int]:
        relay = await _started(store, topics, client_options={"max_request_size": limit})
        try:
            settled = await relay.publish_pending()
            again = await relay.publish_pending()  # parked rows are not tried again
            return settled, again
        finally:
            await relay.stop()

    try:
        settled, again = asyncio.run(publish())
        assert (settled, again) == (4, 0)
        assert store.outbox_backlog() == 0
        reasons = {row.event_id: row.reason for row in store.parked_rows()}
        assert reasons == {garbled.event_id: "undecodable_envelope", oversized.event_id: "too_large"}
        records = _consume(topics, 2)
        assert [dict(record.headers)["event-id"].decode() for record in records] == [first.event_id, later.event_id]

        monkeypatch.setenv("DATABASE_URL", url)
        settings.cache_clear()
        capsys.readouterr()
        try:
            assert mesh(["outbox"]) == 1  # parked rows make it fail, for scripts and alerts
        finally:
            settings.cache_clear()
        shown = capsys.readouterr().out
        assert "unpublished: 0" in shown and "parked: 2" in shown
        assert "undecodable_envelope" in shown and "too_large" in shown and garbled.event_id in shown
    finally:
        engine.dispose()
        next(databases, None)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_published_rows_are_pruned_after_their_retention(backend, tmp_path, postgres_url_lazy):
    databases = fresh_database(backend, tmp_path, postgres_url_lazy)
    engine = make_engine(next(databases))
    migrate(engine)
    store = ReferralStore(engine)
    try:
        rows = [_event("t", f"case-{number}", 0) for number in range(6)]
        rows = [OutboxRecord(r.event_id, r.topic, r.key, r.value, parties=("agency-a",)) for r in rows]
        _write(store, rows)
        store.sequence_feed()
        now = datetime.now(UTC)
        old, recent = now - timedelta(days=10), now - timedelta(days=1)
        marks = {0: ("published_at", old), 1: ("parked_at", old), 2: ("published_at", recent), 5: ("published_at", old)}
        with engine.begin() as connection:
            for index, (column, at) in marks.items():
                connection.execute(update(outbox).where(outbox.c.event_id == rows[index].event_id).values({column: at}))

        assert store.prune_outbox(now, timedelta(days=7)) == 2

        with engine.connect() as connection:
            left = set(connection.execute(select(outbox.c.event_id)).scalars())
            parties = connection.execute(select(func.count()).select_from(outbox_parties)).scalar_one()
        # Old published and old parked rows go; recent, unpublished and the newest row stay.
        assert left == {rows[index].event_id for index in (2, 3, 4, 5)}
        assert parties == 4
        assert store.prune_outbox(now, timedelta(days=7)) == 0
    finally:
        engine.dispose()
        next(databases, None)
