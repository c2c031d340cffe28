"""The agency directory in the referral service's database (table `agencies`, migration 0007).

Seeded from the shipped YAML file on the first start (an empty table), so `make run` and a fresh
deployment work as before; from then on the database is the directory and operators change it
with AgencyAdminService (`mesh agency`). Every change is one transaction with its outbox rows:
the directory event for `mesh.directory.v1` and, for a suspension, one event per open referral
of the agency for `referral.events.v1` (the region service escalates each to the coordinator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from referencedata.agencies import Directory
from services.referral.adapters.storage import OutboxRecord, ReferralStore
from services.referral.adapters.tables import agencies, referrals
from services.referral.domain import OPEN_STATUSES, Referral, referral_from_dict
from services.referral.domain.agency_directory import (
    SUSPENDED,
    AgencyBook,
    AgencyExists,
    DirectoryChange,
    DirectoryEntry,
    StaleAgencyVersion,
    entry_fields,
    entry_from_fields,
)


@dataclass(frozen=True)
class AffectedReferral:
    """An open referral of a suspended agency, with what its events carry besides the snapshot."""

    referral: Referral
    asked_in: str
    facts: dict  # the stored binding facts document (event_codec.facts_from_document)


# Events for one change: the directory event, plus (suspension) the open referrals' events.
ChangeEvents = Callable[[DirectoryChange, list[AffectedReferral]], list[OutboxRecord]]


@dataclass(frozen=True)
class Fingerprint:
    """Enough to tell that the directory changed since the last read (count and version sum)."""

    count: int
    versions: int


def _now() -> datetime:
    return datetime.now(UTC)


class AgencyStore:
    def __init__(self, store: ReferralStore, regions: Mapping[str, str]):
        self.store = store
        self.regions = dict(regions)
        self.on_change: Callable[[], object] = lambda: None  # the live directory reloads at once

    # --- reads --------------------------------------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        with self.store.engine.connect() as connection:
            count, versions = connection.execute(
                select(func.count(), func.coalesce(func.sum(agencies.c.version), 0))
            ).one()
        return Fingerprint(int(count), int(versions))

    def book(self, connection: Connection | None = None) -> AgencyBook:
        if connection is None:
            with self.store.engine.connect() as own:
                return self.book(own)
        rows = connection.execute(select(agencies.c.entry)).scalars().all()
        return AgencyBook((entry_from_fields(row, self.regions) for row in rows), self.regions)

    def directory(self) -> Directory:
        return self.book().directory()

    # --- writes -------------------------------------------------------------------------------

    def seed_if_empty(self, directory: Directory) -> int:
        """The shipped directory, on the first start only; returns the agencies written."""
        with self.store._writing() as connection:
            if connection.execute(select(func.count()).select_from(agencies)).scalar_one():
                return 0
            book = AgencyBook((), self.regions)
            rows = [self._row(book.add(agency, "seed").entry) for agency in directory]
            try:
                connection.execute(insert(agencies), rows)
            except IntegrityError:  # another replica seeded it first
                return 0
        return len(rows)

    def apply(self, decide: Callable[[AgencyBook], DirectoryChange], events: ChangeEvents) -> DirectoryChange:
        """Decide a change on the current book and store it with its events, in one transaction.

        A concurrent change of the same agency loses on the version check (StaleAgencyVersion),
        a concurrent add of the same id or OIN on the unique constraints (AgencyExists).
        """
        try:
            with self.store._writing() as connection:
                change = decide(self.book(connection))
                entry = change.entry
                if change.change == "ADDED":
                    connection.execute(insert(agencies).values(**self._row(entry)))
                else:
                    written = connection.execute(
                        update(agencies)
                        .where(agencies.c.agency_id == entry.agency_id, agencies.c.version == entry.version - 1)
                        .values(**self._row(entry), reason_code=change.reason_code or None)
                    )
                    if written.rowcount != 1:
                        raise StaleAgencyVersion(f"agency {entry.agency_id} changed meanwhile; read it again")
                affected = self._open_referrals(connection, entry.agency_id) if change.change == SUSPENDED else []
                self.store._append_events(connection, events(change, affected))
        except IntegrityError:
            raise AgencyExists("that agency id or OIN is already in the directory") from None
        self.on_change()
        return change

    @staticmethod
    def _open_referrals(connection: Connection, agency_id: str) -> list[AffectedReferral]:
        """Open referrals the agency receives, is asked to take over, or holds."""
        rows = connection.execute(
            select(referrals.c.document, referrals.c.asked_in, referrals.c.facts).where(
                referrals.c.status.in_(sorted(status.value for status in OPEN_STATUSES)),
                or_(
                    referrals.c.receiver == agency_id,
                    referrals.c.pending_receiver == agency_id,
                    referrals.c.sender == agency_id,
                ),
            )
        )
        found = [AffectedReferral(referral_from_dict(row.document), row.asked_in, row.facts) for row in rows]
        return sorted(
            (a for a in found if agency_id in (a.referral.receiver, a.referral.pending_receiver, a.referral.holder)),
            key=lambda a: a.referral.referral_id,
        )

    @staticmethod
    def _row(entry: DirectoryEntry) -> dict:
        return {
            "agency_id": entry.agency_id,
            "oin": entry.agency.oin,
            "suspended": entry.agency.suspended,
            "version": entry.version,
            "entry": entry_fields(entry),
            "updated_at": _now(),
        }
