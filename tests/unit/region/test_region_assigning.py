"""The region service's decision step without Kafka: event + case record -> assignment + record."""

from __future__ import annotations

import uuid

import pytest

from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from referralmesh.v1 import common_pb2, events_pb2
from services.region.adapters.assigning import (
    SENT_LIMIT,
    Assigner,
    Refused,
    already_seen,
    load_agency_regions,
    sent_for,
)
from services.region.decide import load_resolver

CONFIG = MeshSettings()
ASSIGNER = Assigner(load_resolver(CONFIG.region_policy_path), load_agency_regions(CONFIG.agency_directory_path))
FACTS = common_pb2.BindingFacts(
    residence=[common_pb2.Period(municipality="GM0014", from_date="2015-01-01", to_date="2026-10-01", registered=True)]
)


def referral(event_type, version, **fields):
    payload = events_pb2.ReferralEvent(
        referral_id="ref-1",
        event_type=event_type,
        version=version,
        need_domains=["shelter"],
        asked_in="GM0363",
        facts=FACTS,
        **fields,
    )
    return envelopes.new_envelope(case_id="case-1", producer="t", event_id=f"e{version}", referral=payload)


def override(**fields):
    return envelopes.new_envelope(
        case_id="case-1", producer="t", event_id=str(uuid.uuid4()), override=events_pb2.CoordinatorOverride(**fields)
    )


def run(events):
    record, out = {}, []
    for envelope in events:
        outcome = (ASSIGNER.on_override if envelope.HasField("override") else ASSIGNER.on_referral)(envelope, record)
        record = outcome.record
        assert already_seen(record, envelope.event_id)
        if outcome.assignment is not None:
            a = outcome.assignment.assignment
            out.append((a.trigger, a.responsible_region, a.rule, a.handover_to))
    return record, out


def test_the_handover_flow():
    record, out = run(
        [
            referral("ReferralRequested", 1, sender="central-amsterdam", receiver="shelter-amsterdam"),
            referral("ReferralAccepted", 2, holder="shelter-amsterdam", previous_holder="central-amsterdam"),
            referral("ReferralForwarded", 3, pending_receiver="shelter-groningen", handover=True),
            referral("ReferralDeclined", 4, handover=True),
            referral(
                "ReferralAccepted", 5, holder="shelter-groningen", previous_holder="shelter-amsterdam", handover=True
            ),
            referral("ReferralStarted", 6, holder="shelter-groningen"),
        ]
    )
    assert out == [
        ("ReferralRequested", "GM0363", "handover_to_better_bound_region", "GM0014"),
        ("ReferralForwarded", "GM0363", "handover_to_better_bound_region", "GM0014"),
        ("ReferralDeclined", "GM0363", "handover_refused", "GM0014"),
        ("ReferralAccepted", "GM0014", "handover_accepted", ""),
    ]
    assert [entry["region"] for entry in record["history"]] == ["GM0363"] * 3 + ["GM0014"]
    assert "facts" not in str(record) and record["state"]["base_region"] == "GM0014"


def test_the_same_event_and_state_give_the_same_assignment():
    event = referral("ReferralRequested", 1)
    first, second = ASSIGNER.on_referral(event, {}), ASSIGNER.on_referral(event, {})
    assert first.assignment.event_id == second.assignment.event_id
    assert first.assignment.assignment == second.assignment.assignment


@pytest.mark.parametrize(
    ("languages", "explained_in"),
    [(["es", "en"], ["nl", "es", "en"]), (["pl"], ["nl", "pl"]), (["nl"], ["nl"]), ([], ["nl"]), (["ar"], ["nl"])],
)
def test_the_assignment_explains_itself_in_the_case_languages_and_dutch_only(languages, explained_in):
    assignment = ASSIGNER.on_referral(referral("ReferralRequested", 1, languages=languages), {}).assignment
    texts = dict(assignment.assignment.explanation)
    assert sorted(texts) == sorted(explained_in)
    assert all("Amsterdam" in text for text in texts.values())  # GM0363, responsible: help was asked there


def test_a_handled_event_keeps_its_assignment_as_sent_for_a_redelivery_to_send_again():
    requested = referral("ReferralRequested", 1, sender="central-amsterdam", receiver="shelter-amsterdam")
    first = ASSIGNER.on_referral(requested, {})
    as_sent = envelopes.encode(first.assignment)
    assert sent_for(first.record, requested.event_id) == [as_sent]

    started = ASSIGNER.on_referral(referral("ReferralStarted", 2, holder="shelter-amsterdam"), first.record)
    assert started.assignment is None and sent_for(started.record, "e2") == []
    assert sent_for(started.record, requested.event_id) == [as_sent]

    record = started.record
    for version in range(3, 3 + SENT_LIMIT):  # each a new decision with an assignment
        outcome = ASSIGNER.on_referral(
            referral("ReferralForwarded", version, pending_receiver="shelter-groningen"), record
        )
        assert outcome.assignment is not None
        record = outcome.record
    # Only the newest inputs can be read again after a crash: the record stays bounded.
    assert len(record["sent"]) == SENT_LIMIT and sent_for(record, requested.event_id) == []


def test_override_and_lift():
    _record, out = run(
        [
            referral("ReferralRequested", 1),
            override(region="GM0344", reason_code="dispute_settled"),
            referral("ReferralAccepted", 2, holder="shelter-groningen", previous_holder="x", handover=True),
            override(lift=True, reason_code="closed"),
        ]
    )
    assert [o[1:3] for o in out] == [
        ("GM0363", "handover_to_better_bound_region"),
        ("GM0344", "coordinator_override"),
        ("GM0344", "coordinator_override"),
        ("GM0014", "override_lifted"),
    ]


def _interleavings(first: list, second: list):
    """Every merge of two streams that keeps each stream's own order."""
    if not first or not second:
        yield first + second
        return
    for rest in _interleavings(first[1:], second):
        yield [first[0], *rest]
    for rest in _interleavings(first, second[1:]):
        yield [second[0], *rest]


def test_override_and_referral_events_give_one_outcome_in_any_interleaving():
    referral_events = [referral("ReferralRequested", 1), referral("ReferralDeclined", 2, decline_reason=2)]
    overrides = [override(region="GM0344", reason_code="dispute_settled"), override(lift=True, reason_code="closed")]
    outcomes = set()
    for order in _interleavings(referral_events, overrides):
        record, out = run(order)
        outcomes.add((str(record["state"]), out[-1][1]))
    assert outcomes == {
        (str({"base_region": "GM0363", "override": None, "proposed": "GM0014", "provisional": False}), "GM0363")
    }


@pytest.mark.parametrize(
    "envelope, field",
    [
        (override(region="GM0344"), "override.reason_code"),
        (override(region="GM9999", reason_code="x"), "override.region"),
        (override(lift=True, reason_code="x"), "override.lift"),
    ],
)
def test_bad_overrides_are_refused_naming_the_field(envelope, field):
    with pytest.raises(Refused, match=field.replace(".", r"\.")):
        ASSIGNER.on_override(envelope, {})


def test_bad_facts_are_refused_naming_the_field():
    event = referral("ReferralRequested", 1)
    event.referral.asked_in = "GM9999"
    with pytest.raises(Refused, match="asked_in"):
        ASSIGNER.on_referral(event, {})
