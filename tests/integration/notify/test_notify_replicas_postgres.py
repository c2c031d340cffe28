"""Two notify replicas on one PostgreSQL: two store instances (their own engines and thread
pools, as two processes have) on one fresh database.

- replicas may start at once (the schema is set up by one of them, the other finds it done);
- the alert change feed never skips a change, however the two replicas' appends interleave
  and commit (a live reader following the cursor sees every change exactly once, in order);
- a coordinator who signs in on replica A is served by replica B (sessions are shared), and
  failed sign-ins count on every replica (throttling is shared);
- a contact sealed through A opens through B, and an erasure through B shreds the key for A;
- the same notification, alert or sealer recorded by both replicas at once is recorded once,
  and neither replica fails;
- a due delivery is claimed by one replica's dispatcher only.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters import passwords
from services.notify.adapters.dashboard import Dashboard, LocalPasswords
from services.notify.adapters.grpc_api import erase_client
from services.notify.adapters.kek_file import LocalKeyFile
from services.notify.adapters.keystore import ContactUnavailable, KeyStore, KeyTable, wrapped_case_keys
from services.notify.adapters.shared_throttle import SharedSignInThrottle
from services.notify.adapters.store import NotifyStore, alert_changes
from services.notify.application import AlertDesk
from services.notify.domain.alerts import Alert, raise_alert
from services.notify.domain.contact import Contact
from services.notify.domain.throttle import ACCOUNT_POLICY, ADDRESS_POLICY

CHEAP = passwords.ScryptCost(n=2**4, r=8, p=1)
REGIONS = {"GM0518": "Haaglanden", "GM0344": "Utrecht"}
PASSWORD = "a-long-enough-password"
MARKER = "+31 6 1234 MARKER 5678"
ESCALATION = events_pb2.EscalationEvent(region="GM0518").SerializeToString()


@pytest.fixture
def database(postgres_url):
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    name = f"notify_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def replicas(database):
    """Replicas A and B, started at the same moment on an empty database."""
    start = threading.Barrier(2)

    def open_store() -> NotifyStore:
        start.wait(timeout=30)
        return NotifyStore.open(database)

    with ThreadPoolExecutor(2) as pool:
        a, b = (future.result(timeout=60) for future in [pool.submit(open_store) for _ in range(2)])
    yield a, b
    a.close()
    b.close()


def _alert(escalation_id: str, region: str = "GM0518") -> Alert:
    now = datetime.now(UTC)
    return raise_alert(
        Alert(
            escalation_id=escalation_id,
            case_id=f"case-{escalation_id}",
            referral_id=f"ref-{escalation_id}",
            region=region,
            level="REGION_COORDINATOR",
            rule="not_accepted_in_time",
            fired_at=now,
            case_started_at=now,
        )
    )


def _record(store: NotifyStore, notification_id: str, channel: str = "webhook") -> bool:
    return store.record_notification(
        notification_id=notification_id,
        case_id="case-1",
        audience="AGENCY",
        recipient="shelter-utrecht",
        template="referral_assigned",
        language="nl",
        channel=channel,
        envelope=b"envelope",
    )


def test_replicas_started_together_share_one_schema(replicas):
    a, b = replicas
    assert a.postgres and b.postgres
    assert a.add_alert(_alert("e-1"), ESCALATION)
    assert [s.alert.escalation_id for s in b.alerts()] == ["e-1"]


def test_the_change_feed_never_skips_a_change_appended_concurrently_by_two_replicas(replicas):
    a, b = replicas
    writers, per_writer = 6, 15
    for writer in range(writers):
        (a if writer % 2 else b).add_alert(_alert(f"w{writer}"), ESCALATION)
    start = threading.Barrier(writers + 1)
    done = threading.Event()
    seen: list[int] = []

    def write(writer: int) -> None:
        store = a if writer % 2 else b
        stored = store.get_alert(f"w{writer}")
        assert stored is not None
        start.wait(timeout=30)
        for _ in range(per_writer):
            store.save_alert(stored.alert)

    def follow() -> None:
        """A live view on replica A: follow the cursor while the writers append."""
        cursor = 0
        start.wait(timeout=30)
        while True:
            finished = done.is_set()
            for change in a.changes_after(cursor):
                seen.append(change.seq)
                cursor = change.seq
            if finished:
                return

    with ThreadPoolExecutor(writers + 1) as pool:
        reader = pool.submit(follow)
        for future in [pool.submit(write, writer) for writer in range(writers)]:
            future.result(timeout=120)
        done.set()
        reader.result(timeout=120)
    with a.engine.connect() as connection:
        committed = list(connection.execute(select(alert_changes.c.seq).order_by(alert_changes.c.seq)).scalars())
    assert len(committed) == writers + writers * per_writer
    assert seen == committed  # every change once, in order: none skipped, none twice


def test_a_change_committed_late_is_not_skipped_by_a_reader_that_saw_a_later_one(replicas):
    """Replica A holds a change open; replica B's append waits for it, so no reader can see B's
    change (a higher number) before A's (a lower one) is committed."""
    a, b = replicas
    a.add_alert(_alert("slow"), ESCALATION)
    cursor = a.last_cursor()
    with a.engine.connect() as held:
        transaction = held.begin()
        a._append_change(held, "slow", 1.0)  # numbered, not committed yet
        with ThreadPoolExecutor(1) as pool:
            b_adds = pool.submit(b.add_alert, _alert("fast"), ESCALATION)
            assert [c.alert.escalation_id for c in b.changes_after(cursor)] == []
            assert not b_adds.done()  # B's append waits for A's to commit
            transaction.commit()
            assert b_adds.result(timeout=30) is True
    assert [c.alert.escalation_id for c in b.changes_after(cursor)] == ["slow", "fast"]


async def test_a_coordinator_signed_in_on_replica_a_is_served_by_replica_b(replicas):
    a, b = replicas
    a.put_coordinator("coord-gm0518", passwords.hash_password(PASSWORD, cost=CHEAP), "GM0518")
    a.add_alert(_alert("e-visible"), ESCALATION)
    clients = []
    for store in (a, b):
        dashboard = Dashboard(
            AlertDesk(store, REGIONS), store, LocalPasswords(store, cost=CHEAP), REGIONS, secure=False
        )
        client = TestClient(TestServer(dashboard.app()))
        await client.start_server()
        clients.append(client)
    on_a, on_b = clients
    try:
        signed_in = await on_a.post(
            "/login", data={"username": "coord-gm0518", "password": PASSWORD}, allow_redirects=False
        )
        assert signed_in.status == 303
        session = signed_in.cookies["mesh_session"].value
        on_b.session.cookie_jar.clear()
        page = await on_b.get("/dashboard", headers={"Cookie": f"mesh_session={session}"}, allow_redirects=False)
        assert page.status == 200
        assert "e-visible" in await page.text()
        signed_out_elsewhere = await on_b.get("/dashboard", allow_redirects=False)
        assert signed_out_elsewhere.status == 303  # no cookie, no session: to the sign-in page
    finally:
        for client in clients:
            await client.close()
    sign_ins = [e for e in b.access_entries() if e["action"] == "SIGN_IN"]
    assert [e["result"] for e in sign_ins] == ["ok"]  # replica A's entry, read on replica B


def test_a_contact_sealed_through_a_opens_through_b_and_an_erasure_through_b_shreds_it_for_a(replicas):
    a, b = replicas
    kek = LocalKeyFile(secrets.token_bytes(32))
    keys_a, keys_b = KeyStore(KeyTable(a.engine), kek), KeyStore(KeyTable(b.engine), kek)
    try:
        sealed = keys_a.seal("case-a", Contact("sms", MARKER))
        a.update_case("case-a", contact_key_id=sealed.key_id, contact_ciphertext=sealed.ciphertext)
        assert keys_b.open("case-a", sealed) == Contact("sms", MARKER)
        assert keys_b.seal("case-a", Contact("sms", MARKER)).key_id == sealed.key_id  # one key per case
        with a.engine.connect() as connection:
            (wrapped,) = connection.execute(select(wrapped_case_keys.c.wrapped_key)).one()
        assert len(wrapped) > 32 and MARKER.encode() not in bytes(wrapped)  # stored wrapped only

        assert erase_client(keys_b, b, "case-a") is True
        with pytest.raises(ContactUnavailable):
            keys_a.open("case-a", sealed)
        assert not keys_a.has_key("case-a")
        assert a.case("case-a").contact_ciphertext is None
        with a.engine.connect() as connection:
            assert connection.execute(select(wrapped_case_keys)).first() is None
        assert erase_client(keys_a, a, "case-a") is False  # already gone: idempotent
    finally:
        keys_a.close()
        keys_b.close()


def test_two_replicas_sealing_a_new_case_at_once_agree_on_one_key(replicas):
    a, b = replicas
    kek = LocalKeyFile(secrets.token_bytes(32))
    stores = [KeyStore(KeyTable(a.engine), kek), KeyStore(KeyTable(b.engine), kek)]
    start = threading.Barrier(2)

    def seal(keys: KeyStore) -> common_pb2.SealedContact:
        start.wait(timeout=30)
        return keys.seal("case-new", Contact("email", "client@example.org"))

    try:
        with ThreadPoolExecutor(2) as pool:
            sealed = [future.result(timeout=30) for future in [pool.submit(seal, keys) for keys in stores]]
        assert sealed[0].key_id == sealed[1].key_id
        for keys in stores:
            for one in sealed:
                assert keys.open("case-new", one) == Contact("email", "client@example.org")
    finally:
        for keys in stores:
            keys.close()


def test_the_same_notification_recorded_by_both_replicas_at_once_is_recorded_once(replicas):
    a, b = replicas
    rounds = 20
    start = threading.Barrier(2)

    def record_all(store: NotifyStore) -> list[bool]:
        start.wait(timeout=30)
        return [_record(store, f"n-{i}") for i in range(rounds)]

    with ThreadPoolExecutor(2) as pool:
        first, second = (f.result(timeout=60) for f in [pool.submit(record_all, store) for store in (a, b)])
    assert all(x != y for x, y in zip(first, second, strict=True))  # exactly one replica recorded each
    assert len(b.deliveries()) == rounds


def test_the_same_alert_and_sealer_from_both_replicas_are_recorded_once(replicas):
    a, b = replicas
    start = threading.Barrier(2)

    def both(store: NotifyStore, agency: str) -> bool:
        start.wait(timeout=30)
        store.record_sealer("case-s", agency)
        return store.add_alert(_alert("e-same"), ESCALATION)

    with ThreadPoolExecutor(2) as pool:
        added = sorted(
            f.result(timeout=30) for f in [pool.submit(both, a, "agency-a"), pool.submit(both, b, "agency-b")]
        )
    assert added == [False, True]
    assert len(a.changes_after(0)) == 1
    assert len(a.case_parties("case-s")) == 1


def test_a_due_delivery_is_claimed_by_one_replica_only(replicas):
    a, b = replicas
    for i in range(30):
        _record(a, f"due-{i}")
    start = threading.Barrier(2)

    def claim(store: NotifyStore) -> set[str]:
        start.wait(timeout=30)
        claimed: set[str] = set()
        while batch := store.claim_due_deliveries(now=2e9, lease_seconds=600, limit=4):
            claimed |= {d.notification_id for d in batch}
        return claimed

    with ThreadPoolExecutor(2) as pool:
        on_a, on_b = (f.result(timeout=60) for f in [pool.submit(claim, store) for store in (a, b)])
    assert not on_a & on_b
    assert on_a | on_b == {f"due-{i}" for i in range(30)}


async def test_the_async_face_runs_store_calls_off_the_event_loop(replicas):
    a, _b = replicas
    loop_thread = threading.get_ident()
    threads: list[int] = []
    original = a.last_cursor

    def last_cursor() -> int:
        threads.append(threading.get_ident())
        return original()

    a.last_cursor = last_cursor
    results = await asyncio.gather(*(a.aio.last_cursor() for _ in range(4)))
    assert results == [0, 0, 0, 0]
    assert threads and loop_thread not in threads


def test_failed_sign_ins_spread_over_two_replicas_lock_the_account_on_both(replicas):
    a, b = replicas
    on_a, on_b = SharedSignInThrottle(a.engine), SharedSignInThrottle(b.engine)
    now = 1_900_000_000.0
    for attempt in range(ACCOUNT_POLICY.max_failures - 1):
        (on_a if attempt % 2 else on_b).failed(f"198.51.100.{attempt}", "Coord-GM0518", now + attempt)
    assert on_a.retry_after("203.0.113.9", "coord-gm0518", now + 10) == 0
    on_b.failed("203.0.113.9", "coord-gm0518", now + 10)  # the 5th, on the other replica
    assert on_a.retry_after("192.0.2.1", "COORD-gm0518", now + 11) == ACCOUNT_POLICY.lockout - 1
    assert on_b.retry_after("192.0.2.1", "someone-else", now + 11) == 0
    on_a.succeeded("coord-gm0518")
    assert on_b.retry_after("192.0.2.1", "coord-gm0518", now + 12) == 0


def test_failures_counted_at_once_by_two_replicas_are_all_counted(replicas):
    a, b = replicas
    throttles = [SharedSignInThrottle(a.engine), SharedSignInThrottle(b.engine)]
    now = 1_900_000_000.0
    per_replica = (ADDRESS_POLICY.max_failures - 1) // 2  # 9 + 9 = 18: not locked yet
    start = threading.Barrier(2)

    def fail(throttle: SharedSignInThrottle) -> None:
        start.wait(timeout=30)
        for i in range(per_replica):
            throttle.failed("198.51.100.7", f"user-{i}", now + i)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(fail, throttle) for throttle in throttles]:
            future.result(timeout=60)
    assert throttles[0].retry_after("198.51.100.7", "", now + 20) == 0
    throttles[1].failed("198.51.100.7", "x", now + 20)  # 19th
    assert throttles[0].retry_after("198.51.100.7", "", now + 21) == 0
    throttles[0].failed("198.51.100.7", "y", now + 21)  # 20th: the address is locked everywhere
    assert throttles[1].retry_after("198.51.100.7", "", now + 22) > 0
