"""The referral store and use cases on SQLite and PostgreSQL: migrations, idempotent creates,
optimistic concurrency, the transactional outbox and the append-only access log."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError

from services.referral.adapters import storage
from services.referral.adapters.storage import MIGRATIONS, RequestKeyReused, make_engine, migrate
from services.referral.adapters.tables import access_log, outbox, outbox_parties, referrals
from services.referral.application import ListFilter, NewReferral, ReferralUseCases
from services.referral.domain import (
    Action,
    ConsentMissing,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    load_directory,
)
from tests.integration.referral.referral_db_kit import NEXT, RECEIVER, SENDER, STRANGER, caller, new_referral


def _count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_migrations_run_from_empty_to_head_and_again(database_url):
    engine = make_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)  # a second run is a no-op
        names = set(inspect(engine).get_table_names())
        assert {
            "referrals",
            "request_keys",
            "outbox",
            "outbox_parties",
            "access_log",
            "access_log_purge_horizon",
            "alembic_version",
        } <= names
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert head == "0007"
    finally:
        engine.dispose()


def test_create_is_idempotent_by_request_key(use_cases, store):
    command = new_referral(key="same-key")
    first = use_cases.create(caller(SENDER), command)
    again = use_cases.create(caller(SENDER), command)
    assert again.referral_id == first.referral_id and again.version == 1
    assert _count(store.engine, referrals) == 1
    assert _count(store.engine, outbox) == 1  # one event, not two

    changed = new_referral(command.case_id, key="same-key", need="health")
    with pytest.raises(RequestKeyReused):
        use_cases.create(caller(SENDER), changed)
    assert _count(store.engine, referrals) == 1

    # The key belongs to its sender: another agency may use the same string.
    other = new_referral(key="same-key", receiver=NEXT)
    assert use_cases.create(caller(RECEIVER), other).referral_id != first.referral_id


def test_racing_creates_with_one_key_make_one_referral(use_cases, store):
    command = new_referral(key="raced-key")
    results, errors = [], []
    barrier = threading.Barrier(6)

    def create():
        barrier.wait()
        try:
            results.append(use_cases.create(caller(SENDER), command).referral_id)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert _count(store.engine, referrals) == 1
    assert _count(store.engine, outbox) == 1


def test_two_racing_transitions_exactly_one_wins(use_cases, store):
    created = use_cases.create(caller(SENDER), new_referral())
    for _round in range(5):
        current = use_cases.get(caller(RECEIVER), created.referral_id)
        if current.version > 1:
            break
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def race(action):
        barrier.wait()
        try:
            use_cases.transition(caller(RECEIVER), created.referral_id, action, 1)
            outcomes.append("won")
        except StaleVersion:
            outcomes.append("stale")

    threads = [threading.Thread(target=race, args=(action,)) for action in (Action.ACCEPT, Action.ACKNOWLEDGE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stale", "won"]
    final = use_cases.get(caller(RECEIVER), created.referral_id)
    assert final.version == 2
    assert _count(store.engine, outbox) == 2  # the request and the one winning change


def test_many_racing_transitions_on_many_referrals(use_cases, store):
    created = [use_cases.create(caller(SENDER), new_referral()) for _ in range(5)]
    wins: dict[str, int] = {referral.referral_id: 0 for referral in created}
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def race(referral_id):
        barrier.wait()
        try:
            use_cases.transition(caller(RECEIVER), referral_id, Action.ACCEPT, 1)
        except StaleVersion:
            return
        with lock:
            wins[referral_id] += 1

    threads = [threading.Thread(target=race, args=(referral.referral_id,)) for referral in created for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(wins.values()) == {1}


def test_outbox_row_commits_with_the_change_and_a_refusal_writes_neither(use_cases, store):
    created = use_cases.create(caller(SENDER), new_referral())
    with store.engine.connect() as connection:
        rows = connection.execute(select(outbox.c.event_type, outbox.c.referral_id, outbox.c.position)).all()
        parties = {row.agency_id for row in connection.execute(select(outbox_parties.c.agency_id)).all()}
    assert [(row.event_type, row.referral_id) for row in rows] == [("ReferralRequested", created.referral_id)]
    assert parties == {SENDER, RECEIVER}

    before_outbox, before_doc = _count(store.engine, outbox), store.get(created.referral_id).document
    with pytest.raises(IllegalTransition):
        use_cases.transition(caller(RECEIVER), created.referral_id, Action.COMPLETE, 1, outcome="HELPED")
    with pytest.raises(StaleVersion):
        use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACCEPT, 7)
    with pytest.raises(NotPermitted):
        use_cases.transition(caller(SENDER), created.referral_id, Action.ACCEPT, 1)
    assert _count(store.engine, outbox) == before_outbox
    assert store.get(created.referral_id).document == before_doc

    # A failure inside the transaction after the update rolls the update back with it.
    if store.engine.dialect.name == "postgresql":
        # One statement writes it all there: make its access-log part fail inside the database.
        original_pg = storage._pg_access

        def broken_pg(entry, now):
            return {**original_pg(entry, now), "a_outcome": None}  # NOT NULL: the statement fails

        storage._pg_access = broken_pg
        try:
            with pytest.raises(Exception, match="outcome"):
                use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACCEPT, 1)
        finally:
            storage._pg_access = original_pg
    original = storage.ReferralStore._append_access

    def broken(connection, entry):
        raise RuntimeError("disk full")

    storage.ReferralStore._append_access = staticmethod(broken)
    try:
        if store.engine.dialect.name != "postgresql":
            with pytest.raises(RuntimeError):
                use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACCEPT, 1)
        else:  # the multi-referral path (consent withdrawal) still writes statement by statement
            with pytest.raises(RuntimeError):
                use_cases.withdraw_consent(caller(RECEIVER), created.case_id)
    finally:
        storage.ReferralStore._append_access = staticmethod(original)
    assert _count(store.engine, outbox) == before_outbox
    assert store.get(created.referral_id).document == before_doc

    accepted = use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACCEPT, 1)
    assert accepted.version == 2 and _count(store.engine, outbox) == before_outbox + 1


def test_access_log_records_reads_writes_and_denials(use_cases, store):
    created = use_cases.create(caller(SENDER), new_referral())
    use_cases.get(caller(RECEIVER), created.referral_id)
    with pytest.raises(NotPermitted):
        use_cases.get(caller(STRANGER), created.referral_id)
    with pytest.raises(NotPermitted):
        use_cases.transition(caller(STRANGER), created.referral_id, Action.ACCEPT, 1)
    use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACKNOWLEDGE, 1)
    use_cases.list_referrals(caller(SENDER), ListFilter())
    entries = store.access_entries(created.case_id)
    seen = [(entry["action"], entry["organisation"], entry["outcome"]) for entry in entries]
    assert seen == [
        ("referral.create", SENDER, "created"),
        ("referral.read", RECEIVER, "read"),
        ("referral.read", STRANGER, "denied"),
        ("referral.accept", STRANGER, "denied"),
        ("referral.acknowledge", RECEIVER, "changed"),
        ("referral.list", SENDER, "read"),
    ]
    assert all(entry["user"] == "worker-7" and entry["purpose"] == "REFERRAL" for entry in entries)

    # The client's right of access: a party reads the entries, a stranger learns nothing.
    assert len(use_cases.access_log(caller(RECEIVER), created.case_id)) == 6
    with pytest.raises(NotPermitted):
        use_cases.access_log(caller(STRANGER), created.case_id)


def test_access_log_is_append_only_in_the_database(use_cases, store):
    use_cases.create(caller(SENDER), new_referral())
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.execute(update(access_log).values(outcome="forged"))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.execute(delete(access_log))
    assert _count(store.engine, access_log) == 1
    with store.engine.connect() as connection:
        assert connection.execute(select(access_log.c.outcome)).scalar_one() == "created"


def test_purge_removes_only_entries_past_retention(use_cases, store, monkeypatch):
    now = datetime.now(UTC)
    use_cases.create(caller(SENDER), new_referral())
    with store.engine.begin() as connection:
        for age_days in (4000, 3700, 400, 10):
            connection.execute(
                insert(access_log).values(
                    at=now - timedelta(days=age_days),
                    action="referral.read",
                    case_id="case-old",
                    organisation=SENDER,
                    user="u",
                    on_behalf_of="client",
                    purpose="REFERRAL",
                    outcome="read",
                )
            )
    assert storage.access_log_retention_days() == 3650
    assert store.purge_expired_access_entries(now) == 2
    assert _count(store.engine, access_log) == 3
    monkeypatch.setenv("ACCESS_LOG_RETENTION_DAYS", "365")
    assert store.purge_expired_access_entries(now) == 1
    assert _count(store.engine, access_log) == 2  # 10 days old and today's stay
    monkeypatch.setenv("ACCESS_LOG_RETENTION_DAYS", "30")
    with pytest.raises(ValueError, match="at least 365"):
        store.purge_expired_access_entries(now)
    # Even the purge's own mechanism cannot remove a young entry: the trigger has a floor.
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.execute(insert(storage.access_log_purge_horizon).values(horizon=now))
        connection.execute(delete(access_log))


def test_list_filters_and_pages_only_the_callers_referrals(use_cases, store):
    mine = [use_cases.create(caller(SENDER), new_referral(need="shelter" if i % 2 else "health")) for i in range(7)]
    use_cases.create(caller(NEXT), new_referral(receiver=RECEIVER))  # not SENDER's
    accepted_now = use_cases.transition(caller(RECEIVER), mine[0].referral_id, Action.ACCEPT, 1)

    seen, token = [], ""
    while True:
        page, token = use_cases.list_referrals(caller(SENDER), ListFilter(page_size=3, page_token=token))
        seen.extend(referral.referral_id for referral in page)
        if not token:
            break
    assert sorted(seen) == sorted(referral.referral_id for referral in mine)
    assert len(seen) == len(set(seen))

    accepted, _ = use_cases.list_referrals(caller(SENDER), ListFilter(statuses=("ACCEPTED",)))
    assert [referral.referral_id for referral in accepted] == [mine[0].referral_id]
    shelter, _ = use_cases.list_referrals(caller(SENDER), ListFilter(need_domain="shelter"))
    assert len(shelter) == 3
    received, _ = use_cases.list_referrals(caller(RECEIVER), ListFilter(direction="received"))
    assert len(received) == 8
    sent, _ = use_cases.list_referrals(caller(RECEIVER), ListFilter(direction="sent"))
    assert sent == []
    later, _ = use_cases.list_referrals(caller(SENDER), ListFilter(updated_since=accepted_now.updated_at))
    assert [referral.referral_id for referral in later] == [mine[0].referral_id]
    stranger, _ = use_cases.list_referrals(caller(STRANGER), ListFilter())
    assert stranger == []


def test_withdrawing_consent_cancels_every_open_referral_of_the_case_whoever_records_it(use_cases, store):
    first = use_cases.create(caller(SENDER), new_referral("case-w"))
    second = use_cases.create(caller(SENDER), new_referral("case-w", receiver=NEXT))
    done = use_cases.create(caller(SENDER), new_referral("case-w"))
    use_cases.transition(caller(SENDER), done.referral_id, Action.CANCEL, 1)
    start = store.latest_position() - 10

    cancelled = use_cases.withdraw_consent(caller(RECEIVER), "case-w")

    # RECEIVER is no party to the second referral: it is closed all the same, but not shown.
    assert [referral.referral_id for referral in cancelled] == [first.referral_id]
    assert cancelled[0].status.value == "CANCELLED"
    assert cancelled[0].cancel_reason.value == "CONSENT_WITHDRAWN"
    closed_for_next = use_cases.get(caller(NEXT), second.referral_id)
    assert (closed_for_next.status.value, closed_for_next.cancel_reason.value) == ("CANCELLED", "CONSENT_WITHDRAWN")
    assert use_cases.withdraw_consent(caller(SENDER), "case-w") == []
    with pytest.raises(NotPermitted):
        use_cases.withdraw_consent(caller(STRANGER), "case-w")

    # Both agencies of each referral get the change on their stream.
    for agency, referral in ((SENDER, first), (RECEIVER, first), (SENDER, second), (NEXT, second)):
        changes = use_cases.changes_after(caller(agency), max(start, 0))
        assert ("ReferralConsentWithdrawn", referral.referral_id) in {
            (change.event_type, change.referral.referral_id) for change in changes
        }


def test_after_a_withdrawal_the_case_takes_no_referral_until_fresh_consent_is_recorded(use_cases):
    # The case's own parties refer again (a stranger may not: services/referral/domain/case_binding.py).
    first = use_cases.create(caller(SENDER), new_referral("case-f"))
    use_cases.withdraw_consent(caller(RECEIVER), "case-f")
    withdrawn_at = use_cases.get(caller(SENDER), first.referral_id).consent.withdrawn_at

    with pytest.raises(ConsentMissing, match="withdrew consent"):
        use_cases.create(caller(SENDER), new_referral("case-f", receiver=NEXT))
    with pytest.raises(ConsentMissing):  # consent given before the withdrawal is not fresh
        use_cases.create(
            caller(SENDER),
            replace(new_referral("case-f", receiver=NEXT), consent_recorded_at=withdrawn_at - timedelta(minutes=1)),
        )

    again = use_cases.create(
        caller(SENDER),
        replace(new_referral("case-f", receiver=NEXT), consent_recorded_at=withdrawn_at + timedelta(seconds=1)),
    )
    assert again.status.value == "REQUESTED"
    assert use_cases.create(caller(SENDER), new_referral("case-other")).status.value == "REQUESTED"


def test_a_withdrawal_when_nothing_is_open_still_holds_new_referrals_back(use_cases):
    done = use_cases.create(caller(SENDER), new_referral("case-n"))
    use_cases.transition(caller(SENDER), done.referral_id, Action.CANCEL, 1)

    assert use_cases.withdraw_consent(caller(SENDER), "case-n") == []

    with pytest.raises(ConsentMissing):
        use_cases.create(caller(SENDER), new_referral("case-n"))


def test_change_feed_is_per_agency_in_commit_order(use_cases, store):
    start = store.latest_position()
    created = use_cases.create(caller(SENDER), new_referral())
    use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACKNOWLEDGE, 1)
    use_cases.create(caller(NEXT), new_referral(receiver=RECEIVER))
    use_cases.transition(caller(RECEIVER), created.referral_id, Action.ACCEPT, 2)

    def feed(agency):
        return [
            (change.event_type, change.referral.version) for change in use_cases.changes_after(caller(agency), start)
        ]

    assert feed(SENDER) == [("ReferralRequested", 1), ("ReferralAcknowledged", 2), ("ReferralAccepted", 3)]
    assert len(feed(RECEIVER)) == 4
    assert feed(STRANGER) == []
    changes = use_cases.changes_after(caller(SENDER), start)
    resumed = use_cases.changes_after(caller(SENDER), storage_position(changes[0].cursor))
    assert [change.cursor for change in resumed] == [change.cursor for change in changes[1:]]


def storage_position(cursor: str) -> int:
    from services.referral.application import decode_cursor

    return decode_cursor(cursor)


def test_commit_order_cursor_under_concurrent_writers(use_cases, store):
    """Readers following the feed while writers commit never see a position appear behind them."""
    start = store.latest_position()
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        position = start
        while not stop.is_set() or position < store.latest_position():
            for change in use_cases.changes_after(caller(RECEIVER), position):
                position = storage_position(change.cursor)
                seen.append(position)

    def writer():
        for _ in range(8):
            use_cases.create(caller(SENDER), new_referral())

    follow = threading.Thread(target=reader)
    follow.start()
    writers = [threading.Thread(target=writer) for _ in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    follow.join(timeout=30)
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 32


def test_referrals_whose_consent_ran_out_are_closed_and_both_agencies_hear_it(store, config):
    clock = {"now": datetime.now(UTC)}
    use_cases = ReferralUseCases(
        store, config, load_directory(config.agency_directory_path), clock=lambda: clock["now"]
    )
    short = new_referral("case-expiring")
    short = NewReferral(**{**short.__dict__, "consent_valid_until": clock["now"] + timedelta(days=1)})
    expiring = use_cases.create(caller(SENDER), short)
    lasting = use_cases.create(caller(SENDER), new_referral("case-lasting"))
    start = store.latest_position()

    assert use_cases.expire_consents() == []  # nothing has run out yet
    clock["now"] += timedelta(days=2)
    [closed] = use_cases.expire_consents()
    assert closed.referral_id == expiring.referral_id
    assert (closed.status.value, closed.cancel_reason.value) == ("CANCELLED", "CONSENT_EXPIRED")
    assert use_cases.get(caller(SENDER), lasting.referral_id).status.value == "REQUESTED"
    assert use_cases.expire_consents() == []  # closed once, never again
    for agency in (SENDER, RECEIVER):
        changes = use_cases.changes_after(caller(agency), start)
        assert ("ReferralConsentExpired", expiring.referral_id) in {
            (change.event_type, change.referral.referral_id) for change in changes
        }
    entries = store.access_entries("case-expiring")
    assert [(e["organisation"], e["outcome"]) for e in entries if e["action"] == "referral.expire_consent"] == [
        ("system", "changed")
    ]
