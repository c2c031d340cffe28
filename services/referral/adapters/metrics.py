"""The referral service's metrics: what operators watch to see whether clients are waiting.

Attributes are codes (statuses, actions); no case or referral id becomes a label.
"""

from __future__ import annotations

import logging

from opentelemetry.metrics import Observation

from meshkernel.metrics import meter
from services.referral.adapters.storage import ReferralStore
from services.referral.domain import Action, Referral

log = logging.getLogger(__name__)


class ReferralMetrics:
    def __init__(self, store: ReferralStore):
        self.store = store
        instruments = meter("referralmesh.referral")
        self.transitions = instruments.create_counter(
            "referralmesh.referral.transitions",
            unit="{transition}",
            description="accepted lifecycle commands, by action and resulting status",
        )
        self.time_to_accept = instruments.create_histogram(
            "referralmesh.referral.time_to_accept",
            unit="s",
            description="from the referral's creation to its acceptance by a receiver",
        )
        instruments.create_observable_gauge(
            "referralmesh.referrals",
            callbacks=[self._by_status],
            unit="{referral}",
            description="referrals in the system of record, by status",
        )
        instruments.create_observable_gauge(
            "referralmesh.outbox.backlog",
            callbacks=[self._backlog],
            unit="{event}",
            description="committed events not yet published to Kafka",
        )
        instruments.create_observable_gauge(
            "referralmesh.outbox.parked_rows",
            callbacks=[self._parked],
            unit="{event}",
            description="outbox rows set aside because they can never be published (see `mesh outbox`)",
        )

    def created(self, referral: Referral) -> None:
        self.transitions.add(1, {"referralmesh.action": "CREATE", "referralmesh.status": referral.status.value})

    def changed(self, action: Action, referral: Referral) -> None:
        self.transitions.add(1, {"referralmesh.action": action.value, "referralmesh.status": referral.status.value})
        if action is Action.ACCEPT:
            self.time_to_accept.record((referral.updated_at - referral.created_at).total_seconds())

    def _by_status(self, _options):
        try:
            counts = self.store.count_by_status()
        except Exception as error:  # a scrape must never fail the service
            log.warning("could not count referrals for metrics: %s", type(error).__name__)
            return []
        return [Observation(count, {"referralmesh.status": status}) for status, count in counts.items()]

    def _backlog(self, _options):
        try:
            return [Observation(self.store.outbox_backlog())]
        except Exception as error:
            log.warning("could not measure the outbox backlog: %s", type(error).__name__)
            return []

    def _parked(self, _options):
        try:
            return [Observation(self.store.parked_count())]
        except Exception as error:
            log.warning("could not count parked outbox rows: %s", type(error).__name__)
            return []
