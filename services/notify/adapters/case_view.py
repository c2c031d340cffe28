"""The dashboard's case view: one card per case with its timeline, filters, the open cases per
level, and actions on a whole case (POST /dashboard/cases/{case_id}/{action}).

The cards come from the alert records (domain/cases.py groups them) and the timeline from the
referral states and responsibility decisions notify keeps (adapters/case_facts.py), plus each
alert's own history and, for a dispute, the regions and decisions its escalation carries.
A case action applies the same alert actions as before (application.AlertDesk) to every alert
of the case it concerns, so each step is checked, access-logged and sent to the region
service exactly as a single alert's action is.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.store import StoredAlert
from services.notify.domain import cases, timeline
from services.notify.domain.alerts import LEVEL_RANK, AlertError, Coordinator

if TYPE_CHECKING:
    from services.notify.adapters.dashboard import Dashboard

CASE_ACTIONS = ("acknowledge", "take", "reassign", "resolve")
# Levels most pressing first, for the counts at the top and the level filter.
LEVELS = tuple(sorted(LEVEL_RANK, key=lambda level: -LEVEL_RANK[level]))
MAX_CARDS = 200
RESOLVED_SHOWN_FOR = timedelta(days=30)  # the "resolved" filter shows cases resolved this recently


@dataclass(frozen=True)
class CaseItem:
    card: cases.CaseCard
    entries: list[timeline.Entry]  # the case's timeline, oldest first
    dispute: timeline.DisputeRecord | None
    responsible_rule: str


def dispute_record(stored: StoredAlert) -> timeline.DisputeRecord | None:
    """The regions and decisions a DISPUTE escalation carries (codes, regions and times)."""
    if stored.alert.level != "DISPUTE":
        return None
    escalation = events_pb2.EscalationEvent.FromString(stored.escalation)
    decisions = tuple(
        timeline.Entry(
            at=d.at.ToDatetime(tzinfo=UTC),
            kind=timeline.DISPUTE_STEP,
            code=d.rule,
            region=d.region,
            level=events_pb2.EscalationLevel.Name(d.level) if d.level else "",
            detail=d.kind,
        )
        for d in escalation.decisions
    )
    return timeline.DisputeRecord(stored.alert.escalation_id, tuple(escalation.regions_involved), decisions)


def referral_states_of(stored: StoredAlert) -> list[timeline.Entry]:
    """The referral's states as the escalation saw them: the timeline's fallback for a case whose
    referral events notify did not keep (from before it kept them)."""
    escalation = events_pb2.EscalationEvent.FromString(stored.escalation)
    return [
        timeline.Entry(step.at.ToDatetime(tzinfo=UTC), timeline.REFERRAL, common_pb2.ReferralStatus.Name(step.status))
        for step in escalation.history
        if step.HasField("at")
    ]


class CaseView:
    def __init__(self, dashboard: Dashboard, facts: CaseFacts):
        self.dashboard = dashboard
        self.facts = facts

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/dashboard/cases/{case_id}/{action}", self.act)

    # --- reading ------------------------------------------------------------------------
    async def context(self, request: web.Request, who: Coordinator) -> dict:
        """What the dashboard page and its live fragment render: cards, counts and the filter."""
        return await self.dashboard.store.aio.run(self._context, dict(request.query), who)

    def _context(self, query: dict[str, str], who: Coordinator) -> dict:  # blocking: the store's threads
        chosen = cases.CaseFilter.parse(query.get("level", ""), query.get("state", ""), query.get("age", ""))
        now = datetime.now(UTC)
        store = self.dashboard.store
        if chosen.state == "RESOLVED":  # cases resolved lately, not every case ever
            loaded = store.alerts_touched_since((now - RESOLVED_SHOWN_FOR).timestamp())
        else:  # the cases with an unresolved alert, each with all its alerts
            loaded = store.alerts_of_cases({s.alert.case_id for s in store.alerts()})
        stored = {s.alert.escalation_id: s for s in loaded}
        cards = cases.case_cards((s.alert for s in stored.values()), who)
        shown = [card for card in cards if chosen.matches(card, now)][:MAX_CARDS]
        items = [self._item(card, stored) for card in shown]
        return {
            "cases": items,
            "per_level": cases.open_cases_per_level(cards, LEVELS),
            "levels": LEVELS,
            "filter": chosen,
            "age_choices": tuple(cases.AGE_FILTERS),
            "states": [state.value for state in cases.STATE_ORDER],
            "query": "&".join(
                f"{name}={quote(value)}"
                for name, value in (("level", chosen.level), ("state", chosen.state), ("age", chosen.age))
                if value
            ),
        }

    def _item(self, card: cases.CaseCard, stored: dict[str, StoredAlert]) -> CaseItem:
        facts = self.facts.timeline(card.case_id)
        if not any(entry.kind == timeline.REFERRAL for entry in facts):
            latest = stored[card.alerts[-1].escalation_id]
            facts = facts + referral_states_of(latest)
        disputes = [d for d in (dispute_record(stored[a.escalation_id]) for a in card.alerts) if d]
        entries = timeline.case_timeline(facts, card.alerts, disputes)
        decisions = [entry for entry in facts if entry.kind == timeline.DECISION]
        responsible_rule = decisions[-1].code if decisions else card.current.responsible_rule
        return CaseItem(card, entries, disputes[-1] if disputes else None, responsible_rule)

    # --- acting -------------------------------------------------------------------------
    async def act(self, request: web.Request) -> web.Response:
        dashboard = self.dashboard
        current = await dashboard._user(request)
        if current is None:
            raise web.HTTPSeeOther("/login")
        who, token = current
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), dashboard._csrf(token)):
            raise web.HTTPForbidden(text="invalid form token; reload the page")
        action = request.match_info["action"]
        if action not in CASE_ACTIONS:
            raise web.HTTPNotFound()
        case_id = request.match_info["case_id"]
        alerts = [s.alert for s in await dashboard.store.aio.alerts() if s.alert.case_id == case_id]
        card = next(iter(cases.case_cards(alerts, who)), None)
        targets = cases.case_actions_for(card, action) if card else []
        done = 0
        for alert in targets:
            try:
                await dashboard.desk.act(
                    who,
                    alert.escalation_id,
                    action,
                    channel="web",
                    code=str(form.get("code", ""))[:40],
                    region=str(form.get("region", ""))[:16],
                )
                done += 1
            except AlertError:
                pass  # refused steps are access-logged by the desk; the page says "not done"
        result = "done" if targets and done == len(targets) else "refused"
        back = str(form.get("back", ""))
        query = back if back.replace("&", "").replace("=", "").replace("_", "").isalnum() else ""
        raise web.HTTPSeeOther(f"/dashboard?result={result}{'&' + query if query else ''}#case-{quote(case_id)}")
