"""The insight page (GET /insight): how fast clients get help in a region, where cases stall,
clients bound nowhere and handovers, over the last 12 weeks. A region coordinator sees their
region; the national coordinator sees the whole country or one region (?region=GM0518).

Figures come from the notify store: the projection kept as events arrive (case_facts.py) and
the alert records; the arithmetic is domain/insight.py. Charts are server-side SVG
(svg_charts.py), each followed by a table with the same numbers. Numbers only: no case ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from markupsafe import Markup

from services.notify.adapters import svg_charts
from services.notify.adapters.case_facts import MARK_KINDS, CaseFacts
from services.notify.adapters.ui_text import TEXT
from services.notify.domain import insight
from services.notify.domain.alerts import LEVEL_RANK, Action, Alert, Coordinator

if TYPE_CHECKING:
    from services.notify.adapters.dashboard import Dashboard

WEEKS = 12
LEVELS = tuple(sorted(LEVEL_RANK, key=lambda level: -LEVEL_RANK[level]))


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    svg: Markup
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


def closed_at(alert: Alert) -> datetime | None:
    return next((c.at for c in alert.history if c.action is Action.RESOLVED), None)


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def build_charts(
    text: dict, region_label, alerts: list[Alert], facts: CaseFacts, region: str | None, now: datetime
) -> list[Chart]:
    """Every chart of the page for one region (None: all regions), from stored figures only."""
    weeks = insight.recent_weeks(now, WEEKS)
    since = weeks[0]
    week_labels = [f"{week:%d-%m}" for week in weeks]
    charts = []

    samples = facts.acceptances(region, since)
    hours = [sample.hours for sample in samples]
    bins = insight.distribution(hours)
    title = text["acceptance_distribution"]
    charts.append(
        Chart(
            "acceptance-distribution",
            title,
            svg_charts.grouped_bars("acceptance-distribution", title, text["bins"], [(text["referrals"], bins)]),
            (text["duration"], text["referrals"]),
            [(label, str(count)) for label, count in zip(text["bins"], bins, strict=True)],
        )
    )
    weekly = insight.weekly_durations(((s.accepted_at, s.hours) for s in samples), weeks)
    title = text["acceptance_weekly"]
    charts.append(
        Chart(
            "acceptance-weekly",
            title,
            svg_charts.grouped_bars(
                "acceptance-weekly",
                title,
                week_labels,
                [(text["median_hours"], [w.median for w in weekly]), (text["p90_hours"], [w.p90 for w in weekly])],
                whole_numbers=False,
            ),
            (text["week"], text["referrals"], text["median_hours"], text["p90_hours"]),
            [
                (label, str(w.count), _hours(w.median), _hours(w.p90))
                for label, w in zip(week_labels, weekly, strict=True)
            ],
        )
    )

    mine = [a for a in alerts if region is None or a.region == region]
    week_ends = [min(week + insight.WEEK, now) for week in weeks]
    open_counts = insight.open_at(
        (insight.Interval(a.fired_at, closed_at(a), a.level) for a in mine), week_ends, LEVELS
    )
    title = text["open_by_level"]
    level_names = [text["levels"][level] for level in LEVELS]
    charts.append(
        Chart(
            "open-by-level",
            title,
            svg_charts.grouped_bars(
                "open-by-level",
                title,
                week_labels,
                [
                    (name, [counts[level] for counts in open_counts])
                    for name, level in zip(level_names, LEVELS, strict=True)
                ],
            ),
            (text["week"], *level_names),
            [
                (label, *(str(counts[level]) for level in LEVELS))
                for label, counts in zip(week_labels, open_counts, strict=True)
            ],
        )
    )

    in_period = [a for a in mine if a.fired_at >= since]
    by_rule = insight.ranked(a.rule for a in in_period)
    open_by_rule = dict(insight.ranked(a.rule for a in mine if a.open))
    title = text["stalls_by_rule"]
    charts.append(
        Chart(
            "stalls-by-rule",
            title,
            svg_charts.horizontal_bars("stalls-by-rule", title, [(rule_label(text, r), n) for r, n in by_rule]),
            (text["rule"], text["in_period"], text["open_now"]),
            [(rule_label(text, r), str(n), str(open_by_rule.get(r, 0))) for r, n in by_rule],
        )
    )

    marks = facts.marks(region, since)
    counts = insight.weekly_counts(((m.at, m.kind) for m in marks), weeks, MARK_KINDS)
    title = text["bound_nowhere_title"]
    charts.append(
        Chart(
            "bound-nowhere",
            title,
            svg_charts.grouped_bars(
                "bound-nowhere",
                title,
                week_labels,
                [(text["marks"]["bound_nowhere"], [c["bound_nowhere"] for c in counts])],
            ),
            (text["week"], text["marks"]["bound_nowhere"]),
            [(label, str(c["bound_nowhere"])) for label, c in zip(week_labels, counts, strict=True)],
        )
    )
    handovers = MARK_KINDS[1:]
    title = text["handovers_title"]
    charts.append(
        Chart(
            "handovers",
            title,
            svg_charts.grouped_bars(
                "handovers",
                title,
                week_labels,
                [(text["marks"][kind], [c[kind] for c in counts]) for kind in handovers],
            ),
            (text["week"], *(text["marks"][kind] for kind in handovers)),
            [(label, *(str(c[kind]) for kind in handovers)) for label, c in zip(week_labels, counts, strict=True)],
        )
    )
    return charts


def rule_label(text: dict, rule: str) -> str:
    """A rule's plain-language label, with its code for anyone who needs to look it up."""
    label = text["rules"].get(rule)
    return f"{label} ({rule})" if label else f"{text['other_rule']} ({rule})"


class InsightPage:
    def __init__(self, dashboard: Dashboard, facts: CaseFacts):
        self.dashboard = dashboard
        self.facts = facts

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/insight", self.page)

    def _region_for(self, who: Coordinator, wanted: str) -> str | None:
        """The coordinator's own region; the national coordinator chooses (None: all regions)."""
        if not who.national:
            return who.scope
        return wanted if wanted in self.dashboard.regions else None

    async def page(self, request: web.Request) -> web.Response:
        dashboard = self.dashboard
        current = await dashboard._user(request)
        if current is None:
            raise web.HTTPSeeOther("/login")
        who, token = current
        lang = dashboard._lang(request)
        region = self._region_for(who, request.query.get("region", ""))
        text = TEXT[lang]
        now = datetime.now(UTC)
        since = now - timedelta(weeks=WEEKS + 1)
        alerts = [s.alert for s in await dashboard.store.aio.alerts_touched_since(since.timestamp())]
        charts = await dashboard.store.aio.run(
            build_charts, text, dashboard.regions.get, alerts, self.facts, region, now
        )
        await dashboard.store.aio.log_access(
            actor=who.username,
            action="VIEW_INSIGHT",
            case_id="*",
            why="coordination",
            channel="web",
            organisation=who.scope,
        )
        area = text["national"] if region is None else dashboard.regions.get(region, region)
        return dashboard._html(
            dashboard._render(
                "insight.html.j2",
                lang,
                page_title=text["insight_title"],
                user=who,
                csrf=dashboard._csrf(token),
                charts=charts,
                area=area,
                chosen_region=region or "",
                scope_name=text["national"] if who.national else dashboard.regions.get(who.scope, who.scope),
            ),
            lang,
        )
