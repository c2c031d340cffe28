"""Sign-in throttling shared by every notify replica: the counts of domain/throttle.py kept in
the notify database instead of one replica's memory, so a guesser spreading attempts over N
replicas gets no more tries than against one.

Same interface and rules as `SignInThrottle` (the policies, doubling locks, a success clears the
account), with wall-clock seconds as `now` (replicas share no monotonic clock). Each failure is
one transaction that locks the key's row (SELECT ... FOR UPDATE), so two replicas counting a
failure for one key at once both count. Rows untouched for longer than any window or lock are
removed as failures come in, which bounds the table. Blocking: the dashboard calls it through
the store's thread pool.
"""

from __future__ import annotations

import json

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from services.notify.adapters.store import schema_transaction
from services.notify.domain.throttle import ACCOUNT_POLICY, ADDRESS_POLICY, KeyState, ThrottlePolicy

throttle_metadata = MetaData()

sign_in_throttle = Table(
    "sign_in_throttle",
    throttle_metadata,
    Column("kind", String(8), primary_key=True),  # address, account
    Column("key", String(200), primary_key=True),
    Column("failures", Text, nullable=False),  # JSON list of wall-clock seconds
    Column("locked_until", Float, nullable=False),
    Column("locks", Integer, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)

ADDRESS, ACCOUNT = "address", "account"


class SharedSignInThrottle:
    blocking = True  # database calls: the dashboard runs them in the store's thread pool

    def __init__(
        self, engine: Engine, account: ThrottlePolicy = ACCOUNT_POLICY, address: ThrottlePolicy = ADDRESS_POLICY
    ):
        self.engine = engine
        self.policies = {ACCOUNT: account, ADDRESS: address}
        # Nothing older than this can still count: the longest window or lock, whichever is longer.
        self.forget_after = max(max(p.window, p.max_lockout) for p in self.policies.values())
        with schema_transaction(engine) as connection:
            throttle_metadata.create_all(connection)

    def retry_after(self, address: str, username: str, now: float) -> float:
        keys = [(ADDRESS, address[:200]), (ACCOUNT, username.lower()[:200])]
        with self.engine.connect() as connection:
            states = [self._state(connection, kind, key) for kind, key in keys]
        return max(state.retry_after(now) for state in states)

    def failed(self, address: str, username: str, now: float) -> None:
        keys = [(ADDRESS, address[:200])] + ([(ACCOUNT, username.lower()[:200])] if username else [])
        with self.engine.begin() as connection:
            connection.execute(delete(sign_in_throttle).where(sign_in_throttle.c.updated_at < now - self.forget_after))
            for kind, key in keys:
                self._count_failure(connection, kind, key, now)

    def succeeded(self, username: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(sign_in_throttle).where(
                    sign_in_throttle.c.kind == ACCOUNT, sign_in_throttle.c.key == username.lower()[:200]
                )
            )

    def _count_failure(self, connection: Connection, kind: str, key: str, now: float) -> None:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(
            dialect.insert(sign_in_throttle)
            .values(kind=kind, key=key, failures="[]", locked_until=0.0, locks=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=[sign_in_throttle.c.kind, sign_in_throttle.c.key])
        )
        state = self._state(connection, kind, key, for_update=True)
        state.failed(self.policies[kind], now)
        connection.execute(
            update(sign_in_throttle)
            .where(sign_in_throttle.c.kind == kind, sign_in_throttle.c.key == key)
            .values(
                failures=json.dumps(state.failures),
                locked_until=state.locked_until,
                locks=state.locks,
                updated_at=now,
            )
        )

    @staticmethod
    def _state(connection: Connection, kind: str, key: str, *, for_update: bool = False) -> KeyState:
        query = select(sign_in_throttle).where(sign_in_throttle.c.kind == kind, sign_in_throttle.c.key == key)
        row = connection.execute(query.with_for_update() if for_update else query).mappings().first()
        if row is None:
            return KeyState()
        return KeyState(json.loads(row["failures"]), row["locked_until"], row["locks"])
