"""The worker's batches (adapters/intake.py) on a real SQLite store: one transaction per batch,
notifications recorded once by id, a redelivered batch sends exactly what was recorded, and a
client hears once a contact and an assignment have both arrived, in either order."""

from __future__ import annotations

import uuid

import pytest

from meshkernel import envelope as envelopes
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.intake import Intake
from services.notify.adapters.store import NotifyStore
from tests.integration.notify.notify_kit import assignment, escalation


@pytest.fixture
def intake(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    channels = {"AGENCY": "none", "COORDINATOR": "none", "CLIENT": "client"}
    yield Intake(store, CaseFacts(store.engine), lambda audience, _recipient: channels[audience])
    store.close()


def sealed_referral(case_id: str) -> events_pb2.EventEnvelope:
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}",
        event_type="ReferralRequested",
        to_status=common_pb2.REQUESTED,
        version=1,
        actor="exit-the-hague",
        contact=common_pb2.SealedContact(key_id="key-1", ciphertext=b"sealed bytes"),
    )
    return envelopes.new_envelope(case_id=case_id, producer="referral", event_id=str(uuid.uuid4()), referral=payload)


def test_a_batch_records_each_notification_once_and_a_redelivered_batch_sends_the_recorded_bytes(intake):
    batch = [assignment("case-a"), assignment("case-b"), assignment("case-a")]
    first = intake.assignments(batch)
    # Bound nowhere: receiving agency, sending agency, coordinator, per assignment; in input order.
    assert [item.case_id for item in first.outgoing] == ["case-a"] * 3 + ["case-b"] * 3 + ["case-a"] * 3
    assert len({item.notification_id for item in first.outgoing}) == 9

    again = intake.assignments(batch)
    assert [(item.notification_id, item.raw) for item in again.outgoing] == [
        (item.notification_id, item.raw) for item in first.outgoing
    ]
    assert len(intake.store.deliveries()) == 9
    assert all(item.headers == envelopes.kafka_headers(envelopes.decode(item.raw)) for item in again.outgoing)


def test_the_client_hears_once_contact_and_assignment_are_both_known_in_either_order(intake):
    intake.referrals([sealed_referral("case-first-contact")])
    told = intake.assignments([assignment("case-first-contact")])
    assert [item.template for item in told.outgoing if item.audience == "CLIENT"] == ["client_responsible_region"]

    assert not [item for item in intake.assignments([assignment("case-late")]).outgoing if item.audience == "CLIENT"]
    late = intake.referrals([sealed_referral("case-late")])
    assert [item.template for item in late.outgoing] == ["client_responsible_region"]
    assert intake.store.case("case-late").contact_ciphertext == b"sealed bytes"


def test_an_escalation_without_a_region_is_refused_and_the_rest_of_its_batch_raises_alerts_once(intake):
    reminder = escalation("case-y", level=events_pb2.AGENCY_REMINDER)
    reminder.escalation.agency = "shelter-utrecht"
    batch = [reminder, escalation("case-x", region=""), escalation("case-z")]
    handled = intake.escalations(batch)
    assert [index for index, _reason in handled.refused] == [1]
    assert {alert.case_id for alert in handled.alerts} == {"case-y", "case-z"}
    assert [item.template for item in handled.outgoing] == ["referral_reminder"]

    again = intake.escalations(batch)
    assert again.alerts == []  # recorded before: no new alert, no new access-log row
    assert [item.raw for item in again.outgoing] == [item.raw for item in handled.outgoing]
    raised = [entry for entry in intake.store.access_entries() if entry["action"] == "ALERT_RAISED"]
    assert len(raised) == 2
