"""The agency directory as operators change it: add, update, suspend. Pure: no I/O.

The directory lives in the referral service's database (seeded from the shipped YAML on first
start) and changes without a redeploy. Every change is checked here first and returns the
entry after the change together with a `DirectoryChange` that the adapters store and publish
in one transaction (the region and notify services learn it from `mesh.directory.v1`).

Guarantees, each tested in tests/unit/referral/test_agency_directory.py:
- an agency id and an OIN belong to one agency at a time (a suspended agency keeps both);
- every entry is validated as the YAML file is (referencedata.agencies), so the database never
  holds an agency the file loader would refuse;
- an update names the version it saw; a stale version changes nothing (`StaleAgencyVersion`);
- suspension is one-way here (no "unsuspend": a new certificate and a new review belong to an
  `add` under a new id) and keeps the entry, so old referrals still name a known agency;
- a suspended agency is never matched and never a receiver of a new referral.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from referencedata.agencies import Agency, Directory, agency_fields, agency_from_fields
from referencedata.errors import DirectoryError

ADDED, UPDATED, SUSPENDED = "ADDED", "UPDATED", "SUSPENDED"
REASON_CODE_RE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")


class DirectoryRefused(Exception):
    """A directory change that is not allowed; `code` is the stable refusal code."""

    code = "DIRECTORY_REFUSED"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidAgency(DirectoryRefused):
    code = "INVALID_AGENCY"


class AgencyExists(DirectoryRefused):
    code = "AGENCY_EXISTS"


class NoSuchAgency(DirectoryRefused):
    code = "NO_SUCH_AGENCY"


class AgencyAlreadySuspended(DirectoryRefused):
    code = "AGENCY_SUSPENDED"


class StaleAgencyVersion(DirectoryRefused):
    code = "STALE_VERSION"


@dataclass(frozen=True)
class DirectoryEntry:
    agency: Agency  # agency.suspended tells whether it is suspended
    version: int

    @property
    def agency_id(self) -> str:
        return self.agency.agency_id


@dataclass(frozen=True)
class DirectoryChange:
    change: str  # ADDED, UPDATED or SUSPENDED
    entry: DirectoryEntry
    operator: str
    reason_code: str = ""


def validated_agency(fields: Mapping[str, Any], regions: Mapping[str, str]) -> Agency:
    """An agency from operator input, validated as the shipped file is."""
    try:
        return agency_from_fields(fields, regions, source="agency")
    except DirectoryError as error:
        raise InvalidAgency(str(error)) from None


def entry_fields(entry: DirectoryEntry) -> dict[str, Any]:
    """What storage keeps of an entry (the file's fields plus suspension and version)."""
    return {**agency_fields(entry.agency), "suspended": entry.agency.suspended, "version": entry.version}


def entry_from_fields(fields: Mapping[str, Any], regions: Mapping[str, str]) -> DirectoryEntry:
    data = dict(fields)
    suspended = bool(data.pop("suspended", False))
    version = int(data.pop("version", 1))
    return DirectoryEntry(replace(validated_agency(data, regions), suspended=suspended), version)


class AgencyBook:
    """The directory's entries with the rules for changing them (the store persists the result)."""

    def __init__(self, entries: Iterable[DirectoryEntry], regions: Mapping[str, str]):
        self.regions = dict(regions)
        self._by_id = {e.agency_id: e for e in entries}

    def get(self, agency_id: str) -> DirectoryEntry | None:
        return self._by_id.get(agency_id)

    def entries(self, *, include_suspended: bool = True) -> list[DirectoryEntry]:
        return [e for _, e in sorted(self._by_id.items()) if include_suspended or not e.agency.suspended]

    def directory(self) -> Directory:
        """The lookup directory: suspended agencies included (found by id, never matched)."""
        return Directory((e.agency for e in self.entries()), self.regions)

    def add(self, agency: Agency, operator: str) -> DirectoryChange:
        if agency.agency_id in self._by_id:
            raise AgencyExists(f"agency id {agency.agency_id} is already in the directory")
        self._refuse_taken_oin(agency)
        entry = DirectoryEntry(replace(agency, suspended=False), version=1)
        self._by_id[entry.agency_id] = entry
        return DirectoryChange(ADDED, entry, operator)

    def update(self, agency: Agency, expected_version: int, operator: str) -> DirectoryChange:
        current = self._existing(agency.agency_id)
        if expected_version != current.version:
            raise StaleAgencyVersion(
                f"agency {agency.agency_id} is at version {current.version}, not {expected_version}"
            )
        if current.agency.suspended:
            raise AgencyAlreadySuspended(f"agency {agency.agency_id} is suspended and cannot be changed")
        self._refuse_taken_oin(agency)
        entry = DirectoryEntry(replace(agency, suspended=False), version=current.version + 1)
        self._by_id[entry.agency_id] = entry
        return DirectoryChange(UPDATED, entry, operator)

    def suspend(self, agency_id: str, reason_code: str, operator: str) -> DirectoryChange:
        if not REASON_CODE_RE.match(reason_code or ""):
            raise InvalidAgency("reason_code: a short upper-case code such as CONTRACT_ENDED (no free text)")
        current = self._existing(agency_id)
        if current.agency.suspended:
            raise AgencyAlreadySuspended(f"agency {agency_id} is already suspended")
        entry = DirectoryEntry(replace(current.agency, suspended=True), version=current.version + 1)
        self._by_id[agency_id] = entry
        return DirectoryChange(SUSPENDED, entry, operator, reason_code)

    def _existing(self, agency_id: str) -> DirectoryEntry:
        entry = self._by_id.get(agency_id)
        if entry is None:
            raise NoSuchAgency(f"no agency {agency_id} in the directory")
        return entry

    def _refuse_taken_oin(self, agency: Agency) -> None:
        for other in self._by_id.values():
            if other.agency.oin == agency.oin and other.agency_id != agency.agency_id:
                raise AgencyExists(f"OIN {agency.oin} belongs to agency {other.agency_id}")


def receiver_refusal(directory: Directory, receiver: str) -> str | None:
    """Why `receiver` cannot be sent a new referral (None: it can)."""
    agency = directory.get(receiver)
    if agency is None:
        return None  # unknown receivers are the lifecycle's business, as before
    if agency.suspended:
        return f"agency {receiver} is suspended and takes no new referrals"
    return None
