"""Events carry no personal data; snapshots round-trip; structural checks refuse bad rows."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest

from services.referral.domain import (
    ALL_EVENT_TYPES,
    EVENT_TYPES,
    Action,
    DomainEvent,
    InvalidReferral,
    apply,
    check_invariants,
    referral_from_dict,
    referral_to_dict,
)
from services.referral.domain.codes import _Code
from tests.unit.referral.referral_testkit import RECEIVER, SENDER, act, open_, scenarios

# Every field an event may have. Adding one must be a deliberate privacy decision.
EVENT_FIELDS = {
    "event_type",
    "referral_id",
    "case_id",
    "action",
    "from_status",
    "to_status",
    "actor",
    "version",
    "occurred_at",
    "sender",
    "receiver",
    "pending_receiver",
    "addressee",
    "holder",
    "previous_holder",
    "handover",
    "urgency",
    "need_domains",
    "languages",
    "decline_reason",
    "outcome",
    "cancel_reason",
}


def test_event_fields_are_a_fixed_whitelist():
    assert {f.name for f in dataclasses.fields(DomainEvent)} == EVENT_FIELDS


def test_one_event_type_per_action():
    assert set(EVENT_TYPES) == set(Action)
    # + ReferralRequested (the opening) + ReferralFactsChanged (no lifecycle action)
    assert len(ALL_EVENT_TYPES) == len(Action) + 2


def test_event_values_are_ids_codes_and_times_only():
    r = scenarios()["handover_requested"]
    _, event = apply(r, action=Action.ACCEPT, actor=r.pending_receiver, expected_version=r.version, now=r.updated_at)
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            assert (
                item is None
                or isinstance(item, (bool, int, datetime, _Code))
                or (isinstance(item, str) and " " not in item)
            ), (field.name, item)
    assert event.event_id == f"{r.referral_id}:{r.version + 1}"
    assert event.languages == ()  # only requests carry languages


def test_snapshot_round_trip_for_every_scenario():
    for name, r in scenarios().items():
        data = referral_to_dict(r)
        assert referral_from_dict(json.loads(json.dumps(data))) == r, name


def test_snapshot_refuses_broken_rows():
    data = referral_to_dict(act(open_(), Action.ACCEPT, RECEIVER))
    with pytest.raises(InvalidReferral) as err:
        referral_from_dict({**data, "holder": SENDER})  # accepted but sender holds
    assert err.value.field == "holder"
    with pytest.raises(InvalidReferral):
        referral_from_dict({**data, "version": 7})
    with pytest.raises(InvalidReferral):
        referral_from_dict({**data, "status": "LOST_IN_SPACE"})
    missing = dict(data)
    del missing["case_id"]
    with pytest.raises(InvalidReferral) as err:
        referral_from_dict(missing)
    assert err.value.field == "case_id"


def test_check_invariants_accepts_all_scenarios():
    for r in scenarios().values():
        check_invariants(r)
