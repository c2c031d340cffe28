"""Facts in, state, deadlines and escalations out. Codes, ids and times only: no personal data.

Times inside the engine are POSIX seconds (float, UTC). Outputs (``Escalation``) carry aware
datetimes. All state objects are immutable (frozen, slotted) so the pure functions in
``engine.py`` can share unchanged parts between old and new states, and so one deadline
object can sit in the due-time index and in the state at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar, cast

from .calendar import utc

TERMINAL = frozenset({"COMPLETED", "CANCELLED", "FAILED", "CONTACT_LOST"})
CLOSED = frozenset({"COMPLETED", "CANCELLED", "FAILED"})  # nothing more to escalate
STATUSES = frozenset(
    {
        "REQUESTED",
        "RECEIVED",
        "ACCEPTED",
        "IN_PROGRESS",
        "COMPLETED",
        "DECLINED",
        "CANCELLED",
        "CONTACT_LOST",
        "FAILED",
    }
)


def to_ts(value: datetime | float | int) -> float:
    """A POSIX timestamp from an aware datetime or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        return value.timestamp()
    return float(value)


def _code(value: Any) -> str:
    """Enum (str or proto int is the adapter's job) or text to its bare code."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


# --------------------------------------------------------------------------- facts in


@dataclass(frozen=True, slots=True)
class ReferralFacts:
    """What the engine needs of one ReferralEvent (proto) or DomainEvent."""

    case_id: str
    referral_id: str
    event_type: str  # ReferralRequested, ReferralAcknowledged, ...
    to_status: str  # REQUESTED, RECEIVED, ...
    version: int  # the referral's version after the event; duplicates (<= seen) are ignored
    occurred_at: float  # POSIX seconds; deadlines are measured from here
    urgency: str = "NORMAL"
    addressee: str = ""  # agency asked to answer now
    holder: str = ""
    handover: bool = False
    decline_reason: str = ""

    @property
    def refused_handover(self) -> bool:
        return self.handover and self.to_status == "DECLINED"

    @classmethod
    def of(cls, *, occurred_at: datetime | float, **kw: Any) -> ReferralFacts:
        for name in ("to_status", "urgency", "decline_reason"):
            if name in kw:
                kw[name] = _code(kw[name])
        for name in ("addressee", "holder"):
            if name in kw and kw[name] is None:
                kw[name] = ""
        return cls(occurred_at=to_ts(occurred_at), **kw)

    @classmethod
    def from_domain_event(cls, event: Any) -> ReferralFacts:
        """From services.referral.domain.events.DomainEvent (duck-typed)."""
        return cls.of(
            case_id=event.case_id,
            referral_id=event.referral_id,
            event_type=event.event_type,
            to_status=event.to_status,
            version=event.version,
            occurred_at=event.occurred_at,
            urgency=event.urgency,
            addressee=event.addressee,
            holder=event.holder,
            handover=event.handover,
            decline_reason=event.decline_reason,
        )


@dataclass(frozen=True, slots=True)
class AssignmentFacts:
    """What the engine needs of one AssignmentEvent."""

    case_id: str
    referral_id: str
    responsible_region: str
    occurred_at: float
    previous_region: str = ""
    handover_to: str = ""
    rule: str = ""
    no_programme_accepts: bool = False
    event_id: str = ""  # for deduplication of redelivered assignments

    @classmethod
    def of(cls, *, occurred_at: datetime | float, **kw: Any) -> AssignmentFacts:
        return cls(occurred_at=to_ts(occurred_at), **kw)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Deadline:
    """One pending deadline. ``key`` is unique within the case and stable across replays."""

    key: str
    referral_id: str
    rule: str  # the rule that started the chain (a climbed alert keeps its rule)
    level: str  # the level of the escalation it will fire
    due: float
    episode: int  # which occurrence of the situation it belongs to (see engine._active)
    kind: str = "rule"  # rule | climb (alert not acknowledged) | unresolved
    parent: str = ""  # escalation id of the alert this follows up, for climb / unresolved

    def __lt__(self, other: Deadline) -> bool:  # heap ties on (due, case_id)
        return self.key < other.key


@dataclass(frozen=True, slots=True)
class Track:
    """One referral of a case, as far as deadlines need it."""

    referral_id: str
    status: str = ""  # "" until the first referral event (an assignment may come first)
    urgency: str = "NORMAL"
    version: int = 0
    status_version: int = 0  # version at which the current status was entered
    request_version: int = 0  # version at which the current request (REQUESTED) began
    addressee: str = ""
    holder: str = ""
    last_asked: str = ""
    agency_passes: int = 0
    region: str = ""
    region_passes: int = 0
    no_programme: bool = False
    np_episode: int = 0
    history: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class CaseState:
    """Everything the engine keeps per case; serialisable with ``state_to_dict``."""

    case_id: str
    tracks: tuple[Track, ...] = ()
    pending: tuple[Deadline, ...] = ()
    region: str = ""  # the responsible region as last assigned
    regions: tuple[str, ...] = ()  # every region involved so far
    decisions: tuple[tuple[float, str, str, str], ...] = ()  # (at, kind, rule, region or level)
    fired: tuple[str, ...] = ()  # keys of fired deadlines (recent), never scheduled again
    acknowledged: tuple[str, ...] = ()  # escalation ids acknowledged (recent)
    assignments_seen: tuple[str, ...] = ()  # recent assignment event ids (deduplication)

    def track(self, referral_id: str) -> Track | None:
        for t in self.tracks:
            if t.referral_id == referral_id:
                return t
        return None

    def with_track(self, track: Track) -> CaseState:
        tracks = tuple(track if t.referral_id == track.referral_id else t for t in self.tracks)
        if self.track(track.referral_id) is None:
            tracks += (track,)
        return copy_with(self, tracks=tracks)

    @property
    def is_closed(self) -> bool:
        """No deadline pending and every referral ended: the adapter may drop the state later."""
        return not self.pending and all(t.status in TERMINAL for t in self.tracks)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


_T = TypeVar("_T")


def copy_with(obj: _T, **changes: Any) -> _T:
    """``dataclasses.replace`` for the hot path (several times faster for these classes)."""
    cls: Any = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return cast(_T, cls(*[changes[n] if n in changes else getattr(obj, n) for n in names]))


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class Escalation:
    """One fired deadline: what an adapter turns into an EscalationEvent.

    Times are kept as POSIX seconds (``*_ts``) and turned into aware datetimes on access
    (``deadline``, ``fired_at``, ``history``, ``decisions``), so firing stays cheap.
    """

    escalation_id: str  # derived from case, rule and deadline: the same deadline, the same id
    case_id: str
    referral_id: str
    region: str
    level: str
    rule: str
    deadline_ts: float
    fired_at_ts: float
    late_seconds: float
    late: bool  # fired later than the policy's tolerance (e.g. worker was down)
    history_ts: tuple[tuple[str, float], ...]
    agency: str = ""  # the agency asked (reminder) or holding the referral; an agency id
    cause: str = "deadline"  # deadline | not_acknowledged (climbed) | unresolved
    climbed_from: str = ""  # the level of the alert that was not acknowledged
    regions_involved: tuple[str, ...] = ()
    decisions_ts: tuple[tuple[float, str, str, str], ...] = ()  # filled for DISPUTE records

    @property
    def deadline(self) -> datetime:
        return utc(self.deadline_ts)

    @property
    def fired_at(self) -> datetime:
        return utc(self.fired_at_ts)

    @property
    def history(self) -> tuple[tuple[str, datetime], ...]:
        return tuple((s, utc(at)) for s, at in self.history_ts)

    @property
    def decisions(self) -> tuple[tuple[datetime, str, str, str], ...]:
        """(time, kind, rule, region or level): assignments and alerts so far."""
        return tuple((utc(a), k, r, v) for a, k, r, v in self.decisions_ts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalation_id": self.escalation_id,
            "case_id": self.case_id,
            "referral_id": self.referral_id,
            "region": self.region,
            "level": self.level,
            "rule": self.rule,
            "deadline": self.deadline.isoformat(),
            "fired_at": self.fired_at.isoformat(),
            "late_seconds": self.late_seconds,
            "late": self.late,
            "agency": self.agency,
            "cause": self.cause,
            "climbed_from": self.climbed_from,
            "history": [{"status": s, "at": t.isoformat()} for s, t in self.history],
            "regions_involved": list(self.regions_involved),
            "decisions": [{"at": a.isoformat(), "kind": k, "rule": r, "value": v} for a, k, r, v in self.decisions],
        }


# --------------------------------------------------------------------------- serialisation

STATE_FORMAT = 1


def state_to_dict(state: CaseState) -> dict[str, Any]:
    """JSON-able form for a durable table (Faust table value). Round-trips exactly."""
    return {
        "format": STATE_FORMAT,
        "case_id": state.case_id,
        "tracks": [
            {
                "referral_id": t.referral_id,
                "status": t.status,
                "urgency": t.urgency,
                "version": t.version,
                "status_version": t.status_version,
                "request_version": t.request_version,
                "addressee": t.addressee,
                "holder": t.holder,
                "last_asked": t.last_asked,
                "agency_passes": t.agency_passes,
                "region": t.region,
                "region_passes": t.region_passes,
                "no_programme": t.no_programme,
                "np_episode": t.np_episode,
                "history": [[s, at] for s, at in t.history],
            }
            for t in state.tracks
        ],
        "pending": [
            {
                "key": d.key,
                "referral_id": d.referral_id,
                "rule": d.rule,
                "level": d.level,
                "due": d.due,
                "episode": d.episode,
                "kind": d.kind,
                "parent": d.parent,
            }
            for d in state.pending
        ],
        "region": state.region,
        "regions": list(state.regions),
        "decisions": [list(d) for d in state.decisions],
        "fired": list(state.fired),
        "acknowledged": list(state.acknowledged),
        "assignments_seen": list(state.assignments_seen),
    }


def _shared(text: str) -> str:
    """One copy of a code or agency id that repeats across cases (JSON decoding makes a new
    string for every occurrence: a million loaded states would hold a million copies of each)."""
    return sys.intern(text) if text else text


_TRACK_CODES = ("status", "urgency", "addressee", "holder", "last_asked", "region")


def _track_from_dict(t: dict[str, Any]) -> Track:
    codes = {name: _shared(t[name]) for name in _TRACK_CODES if name in t}
    return Track(**{**t, **codes, "history": tuple((_shared(s), float(at)) for s, at in t["history"])})


def _deadline_from_dict(d: dict[str, Any], referral_ids: dict[str, str]) -> Deadline:
    return Deadline(
        **{
            **d,
            "referral_id": referral_ids.get(d["referral_id"], d["referral_id"]),  # the track's copy
            "rule": _shared(d["rule"]),
            "level": _shared(d["level"]),
            "kind": _shared(d.get("kind", "rule")),
            "due": float(d["due"]),
        }
    )


def state_from_dict(data: dict[str, Any]) -> CaseState:
    if data.get("format") != STATE_FORMAT:
        raise ValueError(f"unsupported escalation state format {data.get('format')!r}")
    tracks = tuple(_track_from_dict(t) for t in data["tracks"])
    referral_ids = {t.referral_id: t.referral_id for t in tracks}
    return CaseState(
        case_id=data["case_id"],
        tracks=tracks,
        pending=tuple(_deadline_from_dict(d, referral_ids) for d in data["pending"]),
        region=_shared(data["region"]),
        regions=tuple(_shared(r) for r in data["regions"]),
        decisions=tuple((float(a), _shared(k), _shared(r), _shared(v)) for a, k, r, v in data["decisions"]),
        fired=tuple(data["fired"]),
        acknowledged=tuple(data["acknowledged"]),
        assignments_seen=tuple(data["assignments_seen"]),
    )


__all__ = [
    "AssignmentFacts",
    "CaseState",
    "Deadline",
    "Escalation",
    "ReferralFacts",
    "Track",
    "state_from_dict",
    "state_to_dict",
    "to_ts",
]
