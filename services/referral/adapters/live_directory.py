"""The directory as the referral service reads it: from the database, reloaded when it changes.

Every replica serves from an in-memory `Directory` and asks the database at most every
`refresh_seconds` whether the directory changed (one cheap aggregate query); a change made
through this replica reloads it at once. So an agency added on any replica can receive
referrals on every replica within about a second, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from referencedata.agencies import Agency, Directory
from services.referral.adapters.agency_store import AgencyStore, Fingerprint

log = logging.getLogger(__name__)


class LiveDirectory:
    """Directory's read interface (get, by_oin, search, regions, iteration) over the database."""

    def __init__(
        self, agencies: AgencyStore, *, refresh_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ):
        self.agencies = agencies
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._directory = agencies.directory()
        self._fingerprint: Fingerprint | None = agencies.fingerprint()
        self._checked_at = clock()
        agencies.on_change = self.invalidate

    def invalidate(self) -> None:
        with self._lock:
            self._fingerprint = None
            self._checked_at = float("-inf")

    def current(self) -> Directory:
        if self.clock() - self._checked_at < self.refresh_seconds:
            return self._directory
        with self._lock:
            if self.clock() - self._checked_at >= self.refresh_seconds:
                self._reload_if_changed()
        return self._directory

    def _reload_if_changed(self) -> None:
        try:
            fingerprint = self.agencies.fingerprint()
            if fingerprint != self._fingerprint:
                self._directory = self.agencies.directory()
                self._fingerprint = fingerprint
                log.info("agency directory reloaded", extra={"agencies": len(self._directory)})
        except Exception as error:  # the database is away: serve the last directory read
            log.warning("agency directory not reloaded (%s); serving the last one", type(error).__name__)
        self._checked_at = self.clock()

    # --- Directory's interface ----------------------------------------------------------------

    @property
    def regions(self) -> Mapping[str, str]:
        return self.current().regions

    def get(self, agency_id: str) -> Agency | None:
        return self.current().get(agency_id)

    def by_oin(self, oin: str) -> Agency | None:
        """A suspended agency's certificate names no agency any more (its CRL entry may lag)."""
        agency = self.current().by_oin(oin)
        return None if agency is None or agency.suspended else agency

    def search(self, **filters: Any) -> list[Agency]:
        return self.current().search(**filters)

    def __iter__(self) -> Iterator[Agency]:
        return iter(self.current())

    def __len__(self) -> int:
        return len(self.current())

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self.current()
