"""The case view and the insight page over HTTP: one card per case, a case action reaches every
alert of the case, filters, Dutch by default, and charts of numbers without case ids.

The dashboard app runs in-process on a real socket (aiohttp's test server) with a real SQLite
store, fed the way the Faust agents feed it (AlertDesk.record_escalation, CaseFacts.record_*).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from meshkernel import envelope as envelopes
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters import passwords
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.dashboard import Dashboard, LocalPasswords
from services.notify.adapters.store import NotifyStore
from services.notify.application import AlertDesk
from services.notify.domain.alerts import AlertState
from tests.integration.notify.notify_kit import escalation

CHEAP = passwords.ScryptCost(n=2**4, r=8, p=1)
REGIONS = {"GM0518": "Den Haag", "GM0344": "Utrecht"}
PASSWORD = "a-long-enough-password"


@pytest.fixture
def store(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    for username, scope in (("coord-gm0518", "GM0518"), ("coord-gm0344", "GM0344"), ("coord-national", "NATIONAL")):
        store.put_coordinator(username, passwords.hash_password(PASSWORD, cost=CHEAP), scope)
    yield store
    store.close()


async def _signed_in(store: NotifyStore, username: str) -> tuple[TestClient, AlertDesk]:
    desk = AlertDesk(store, REGIONS)
    dashboard = Dashboard(desk, store, LocalPasswords(store, cost=CHEAP), REGIONS, secure=False)
    client = TestClient(TestServer(dashboard.app()))
    await client.start_server()
    response = await client.post("/login", data={"username": username, "password": PASSWORD}, allow_redirects=False)
    assert response.status == 303
    return client, desk


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match
    return match.group(1)


def _referral(case_id, status, before, at):
    payload = events_pb2.ReferralEvent(referral_id=f"ref-{case_id}", to_status=status, from_status=before, actor="a")
    envelope = envelopes.new_envelope(case_id=case_id, producer="t", event_id=str(uuid.uuid4()), referral=payload)
    envelope.occurred_at.FromDatetime(at)
    return envelope


def _assignment(case_id, at, region="GM0518", **extra):
    payload = events_pb2.AssignmentEvent(
        referral_id=f"ref-{case_id}", responsible_region=region, rule="help_asked_here", **extra
    )
    envelope = envelopes.new_envelope(case_id=case_id, producer="t", event_id=str(uuid.uuid4()), assignment=payload)
    envelope.occurred_at.FromDatetime(at)
    return envelope


async def test_the_alerts_of_a_case_are_one_card_and_taking_the_case_takes_every_alert(store):
    client, desk = await _signed_in(store, "coord-gm0518")
    try:
        await desk.record_escalation(escalation("case-one", level=events_pb2.AGENCY_REMINDER, rule="not_acknowledged"))
        await desk.record_escalation(escalation("case-one", level=events_pb2.REGION_COORDINATOR, rule="not_answered"))
        await desk.record_escalation(escalation("case-utrecht", region="GM0344"))
        page = await (await client.get("/dashboard")).text()
        assert '<html lang="nl">' in page  # Dutch by default
        assert page.count('data-case-id="case-one"') == 1 and "case-utrecht" not in page
        assert "Regiocoördinator" in page and "Niet op tijd geaccepteerd of afgewezen (not_answered)" in page
        assert re.search(r'data-level="REGION_COORDINATOR">\s*<a[^>]*><span class="number">1</span>', page)

        taken = await client.post(
            "/dashboard/cases/case-one/take",
            data={"csrf": _csrf(page), "back": "level=REGION_COORDINATOR"},
            allow_redirects=False,
        )
        assert taken.status == 303 and taken.headers["Location"].startswith("/dashboard?result=done&level=")
        alerts = [s.alert for s in store.alerts() if s.alert.case_id == "case-one"]
        assert [a.state for a in alerts] == [AlertState.TAKEN, AlertState.TAKEN]  # the reminder too
        assert {a.owner for a in alerts} == {"coord-gm0518"}
        assert "case-one" not in await (await client.get("/dashboard?state=OPEN")).text()
        assert 'data-state="TAKEN"' in await (await client.get("/dashboard?state=TAKEN")).text()

        resolved = await client.post(
            "/dashboard/cases/case-one/resolve",
            data={"csrf": _csrf(page), "code": "HELP_STARTED"},
            allow_redirects=False,
        )
        assert "result=done" in resolved.headers["Location"]
        assert not [s for s in store.alerts() if s.alert.case_id == "case-one"]  # none unresolved
        assert "case-one" not in await (await client.get("/dashboard")).text()
        assert "case-one" in await (await client.get("/dashboard?state=RESOLVED")).text()
    finally:
        await client.close()


async def test_a_case_action_outside_the_coordinators_region_changes_nothing(store):
    client, desk = await _signed_in(store, "coord-gm0344")
    try:
        await desk.record_escalation(escalation("case-hague"))
        page = await (await client.get("/dashboard")).text()
        refused = await client.post(
            "/dashboard/cases/case-hague/take", data={"csrf": _csrf(page)}, allow_redirects=False
        )
        assert "result=refused" in refused.headers["Location"]
        assert [s.alert.state for s in store.alerts()] == [AlertState.OPEN]
        forged = await client.post("/dashboard/cases/case-hague/take", data={"csrf": "0" * 32}, allow_redirects=False)
        assert forged.status == 403
    finally:
        await client.close()


async def test_the_timeline_shows_referral_states_decisions_and_actions_in_words(store):
    client, desk = await _signed_in(store, "coord-gm0518")
    try:
        facts = CaseFacts(store.engine)
        start = datetime.now(UTC) - timedelta(days=2)
        facts.record_referral(_referral("case-t", common_pb2.REQUESTED, 0, start))
        facts.record_assignment(_assignment("case-t", start, handover_to="GM0344"))
        await desk.record_escalation(escalation("case-t", rule="not_answered"))
        page = await (await client.get("/dashboard?lang=en")).text()
        timeline = page[page.index('<ol class="timeline">') :]
        assert "Requested" in timeline and "Help was asked here (help_asked_here)" in timeline
        assert "handover proposed to Utrecht" in timeline and "Not accepted or declined in time" in timeline
    finally:
        await client.close()


async def test_the_insight_page_shows_figures_for_the_region_and_no_case_ids(store):
    client, desk = await _signed_in(store, "coord-gm0518")
    try:
        facts = CaseFacts(store.engine)
        now = datetime.now(UTC)
        for index, case_id in enumerate(("case-i1", "case-i2", "case-i3")):
            requested = now - timedelta(hours=20)
            facts.record_referral(_referral(case_id, common_pb2.REQUESTED, 0, requested))
            facts.record_assignment(_assignment(case_id, requested, bound_nowhere=True))
            accepted = requested + timedelta(hours=2 + 10 * index)  # 2, 12 and 22 hours
            facts.record_referral(_referral(case_id, common_pb2.ACCEPTED, common_pb2.RECEIVED, accepted))
        facts.record_assignment(_assignment("case-elsewhere", now, region="GM0344", bound_nowhere=True))
        await desk.record_escalation(escalation("case-i1", rule="not_answered"))
        page = await (await client.get("/insight?lang=en")).text()
        assert "<h1>Insight — how fast clients get help</h1>" in page and "Insight for Den Haag" in page
        assert page.count('role="img"') == 6 and page.count("<table") == 6
        assert "case-i" not in page and "case-elsewhere" not in page
        # Three accepted, in 2, 12 and 22 hours: bins "under 4 hours" 1, "4 to 24 hours" 2.
        table = page[page.index('id="table-acceptance-distribution"') :]
        assert re.search(r"under 4 hours</th><td>1</td>", table) and re.search(r"4 to 24 hours</th><td>2</td>", table)
        weekly = page[page.index('id="table-acceptance-weekly"') :]
        assert "<td>3</td><td>12.0</td><td>22.0</td>" in weekly  # count, median, p90 this week
        bound = page[page.index('id="table-bound-nowhere"') : page.index('id="section-handovers"')]
        assert bound.count("<td>3</td>") == 1  # Utrecht's client is not Den Haag's
        assert "Not accepted or declined in time (not_answered)" in page
        # A region coordinator cannot look at another region; the national coordinator can.
        assert "Insight for Den Haag" in await (await client.get("/insight?region=GM0344&lang=en")).text()
    finally:
        await client.close()
    national, _ = await _signed_in(store, "coord-national")
    try:
        page = await (await national.get("/insight?region=GM0344&lang=en")).text()
        assert "Insight for Utrecht" in page
        assert "Insight for all of the Netherlands" in await (await national.get("/insight?lang=en")).text()
    finally:
        await national.close()


async def test_the_live_cursor_moves_when_a_case_gains_a_timeline_step_and_dutch_stays_the_default(store):
    desk = AlertDesk(store, REGIONS)
    dashboard = Dashboard(desk, store, LocalPasswords(store, cost=CHEAP), REGIONS, secure=False)
    before = await dashboard._live_cursor()
    dashboard.cases.facts.record_referral(_referral("case-live", common_pb2.REQUESTED, 0, datetime.now(UTC)))
    assert await dashboard._live_cursor() == before + 1
    await desk.record_escalation(escalation("case-live"))
    assert await dashboard._live_cursor() == before + 2
    client = TestClient(TestServer(dashboard.app()))
    await client.start_server()
    try:
        page = await (await client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})).text()
        assert '<html lang="nl">' in page  # a browser setting is not a choice
        chosen = await client.get("/login?lang=en")
        assert '<html lang="en">' in await chosen.text()
        assert '<html lang="en">' in await (await client.get("/login")).text()  # the choice is kept
    finally:
        await client.close()


async def test_a_dispute_shows_the_regions_involved_and_the_decisions_so_far(store):
    client, desk = await _signed_in(store, "coord-national")
    try:
        dispute = escalation("case-dispute", level=events_pb2.DISPUTE, rule="unresolved")
        dispute.escalation.regions_involved.extend(["GM0518", "GM0344"])
        first = dispute.escalation.decisions.add(kind="assignment", rule="help_asked_here", region="GM0518")
        first.at.FromDatetime(datetime.now(UTC) - timedelta(days=3))
        second = dispute.escalation.decisions.add(
            kind="escalation", rule="ping_pong", level=events_pb2.NATIONAL_COORDINATOR
        )
        second.at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        await desk.record_escalation(dispute)
        page = await (await client.get("/dashboard?lang=en&level=DISPUTE")).text()
        assert page.count("data-case-id=") == 1
        assert "Regions involved: Den Haag, Utrecht" in page
        decisions = page[page.index('<ol class="dispute">') :]
        assert "Responsibility: Den Haag, Help was asked here (help_asked_here)" in decisions
        assert "Escalation: National coordinator, Passed between regions twice (ping_pong)" in decisions
    finally:
        await client.close()
