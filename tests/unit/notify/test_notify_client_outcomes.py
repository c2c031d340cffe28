"""What agencies see of a client message: one status word from the delivery and its outcome,
reports that only move forward in time, and only for agencies party to the case."""

from __future__ import annotations

import pytest

from meshkernel.principal import AGENCY, COORDINATOR, NATIONAL, Denied, Principal
from services.notify.adapters.client_outcomes import ClientOutcomes
from services.notify.adapters.grpc_api import client_message_outcome, client_message_status
from services.notify.adapters.store import Delivery, NotifyStore
from services.notify.domain.authorisation import may_read_client_messages


def _delivery(status: str, attempts: int = 0) -> Delivery:
    return Delivery(
        notification_id="n-1",
        case_id="case-1",
        audience="CLIENT",
        recipient="client",
        template="client_handover_proposed",
        language="ro",
        channel="client",
        status=status,
        attempts=attempts,
        next_attempt_at=1_800_000_000.0,
        last_result="",
        envelope=b"",
    )


@pytest.fixture
def outcomes(tmp_path) -> ClientOutcomes:
    return ClientOutcomes(NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}").engine)


def test_status_words(outcomes):
    outcomes.note("n-1", "case-1", "sms", "held_quiet_hours", now=100.0)
    held = outcomes.get("n-1")
    assert client_message_status(_delivery("pending"), None) == "pending"
    assert client_message_status(_delivery("pending"), held) == "held_quiet_hours"
    outcomes.note("n-1", "case-1", "sms", "failed", now=200.0)
    failed = outcomes.get("n-1")
    assert client_message_status(_delivery("pending", attempts=2), failed) == "retrying"
    assert client_message_status(_delivery("dead", attempts=6), failed) == "failed"
    outcomes.note("n-1", "case-1", "sms", "rejected", now=300.0)
    assert client_message_status(_delivery("dead", attempts=1), outcomes.get("n-1")) == "rejected"
    assert client_message_status(_delivery("delivered", attempts=1), None) == "sent"
    assert client_message_status(_delivery("skipped"), None) == "not_sent"


def test_the_sent_time_counts_for_the_case_rate_and_reports_only_move_forward(outcomes):
    assert outcomes.last_sent_at("case-1") is None
    outcomes.note("n-1", "case-1", "sms", "held_case_rate", now=100.0)
    assert outcomes.last_sent_at("case-1") is None  # held is not sent
    outcomes.note("n-1", "case-1", "sms", "sent", now=200.0)
    outcomes.note("n-2", "case-1", "email", "sent", now=300.0)
    assert outcomes.last_sent_at("case-1") == 300.0
    assert outcomes.record_receipt("n-1", "buffered", reported_at=210.0)
    assert outcomes.record_receipt("n-1", "delivered", reported_at=220.0)
    assert not outcomes.record_receipt("n-1", "failed", reported_at=215.0)  # older: changes nothing
    assert not outcomes.record_receipt("n-1", "failed", reported_at=220.0)  # the same moment, replayed
    assert not outcomes.record_receipt("unknown", "delivered", reported_at=220.0)
    assert outcomes.get("n-1").receipt == "delivered"
    with pytest.raises(ValueError):
        outcomes.record_receipt("n-1", "teleported", reported_at=230.0)

    message = client_message_outcome(_delivery("delivered", attempts=1), outcomes.get("n-1"))
    assert (message.channel, message.status, message.report, message.attempts) == ("sms", "sent", "delivered", 1)
    assert not message.HasField("next_attempt_at")


def test_only_an_agency_party_to_the_case_reads_its_client_messages():
    parties = frozenset({"exit-the-hague", "shelter-den-haag"})
    may_read_client_messages(Principal(AGENCY, "exit-the-hague"), parties)
    with pytest.raises(Denied):
        may_read_client_messages(Principal(AGENCY, "another-agency"), parties)
    with pytest.raises(Denied):
        may_read_client_messages(Principal(COORDINATOR, "coord-national", NATIONAL), parties)
