"""The store reads the case view and the insight page use: a few cases' alerts, and the alerts
still open or changed lately, so neither page reads every alert ever raised."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.adapters.store import NotifyStore
from services.notify.domain import alerts as a

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
WHO = a.Coordinator("coord-gm0518", "GM0518")


@pytest.fixture
def store(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    yield store
    store.close()


def _add(store, eid, case):
    alert = a.raise_alert(a.Alert(eid, case, "ref", "GM0518", "REGION_COORDINATOR", "not_answered", T0, T0))
    store.add_alert(alert, b"", now=T0.timestamp())
    return alert


def test_alerts_of_cases_include_resolved_ones_and_only_those_cases(store):
    first = _add(store, "e1", "case-1")
    _add(store, "e2", "case-1")
    _add(store, "e3", "case-2")
    store.save_alert(a.resolve(first, WHO, T0, "HELP_STARTED"), now=T0.timestamp())
    assert sorted(s.alert.escalation_id for s in store.alerts_of_cases({"case-1"})) == ["e1", "e2"]
    assert store.alerts_of_cases(set()) == []


def test_alerts_touched_since_are_the_open_ones_and_those_changed_lately(store):
    old = _add(store, "e-old", "case-1")
    recent = _add(store, "e-recent", "case-2")
    _add(store, "e-open", "case-3")
    store.save_alert(a.resolve(old, WHO, T0, "HELP_STARTED"), now=T0.timestamp())
    later = T0 + timedelta(days=40)
    store.save_alert(a.resolve(recent, WHO, later, "HELP_STARTED"), now=later.timestamp())
    since = (T0 + timedelta(days=30)).timestamp()
    assert sorted(s.alert.escalation_id for s in store.alerts_touched_since(since)) == ["e-open", "e-recent"]
