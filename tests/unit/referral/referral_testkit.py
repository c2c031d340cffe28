"""Shared builders for the referral domain tests (imported package-qualified, like every test helper)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.referral.domain import (
    SYSTEM_ACTOR,
    Action,
    Consent,
    DeclineReason,
    Outcome,
    Purpose,
    Referral,
    apply,
    open_referral,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SENDER = "central-amsterdam"
RECEIVER = "shelter-amsterdam"
NEXT = "exit-amsterdam"  # warm-handover target
THIRD = "legal-the-hague"
STRANGER = "care-rotterdam"  # a real agency, but no party to the referral
NOT_CONSENTED = "health-utrecht"  # not covered by the client's consent
CONSENTED = frozenset({RECEIVER, NEXT, THIRD, STRANGER})


def consent(**overrides) -> Consent:
    values: dict[str, Any] = dict(
        organisations=CONSENTED, purpose=Purpose.REFERRAL, valid_until=T0 + timedelta(days=90)
    )
    values.update(overrides)
    return Consent(**values)


def open_(**overrides) -> Referral:
    values: dict[str, Any] = dict(
        referral_id="ref-0001",
        case_id="case-7f3a",
        sender=SENDER,
        receiver=RECEIVER,
        need_domains=["shelter", "safety"],
        urgency="URGENT",
        languages=["ro", "en"],
        consent=consent(),
        purpose=Purpose.REFERRAL,
        now=T0,
    )
    values.update(overrides)
    referral, _ = open_referral(**values)
    return referral


def act(referral: Referral, action: Action, actor: str, **kwargs) -> Referral:
    """Apply a command at the current version, one minute after the last change."""
    kwargs.setdefault("expected_version", referral.version)
    kwargs.setdefault("now", referral.updated_at + timedelta(minutes=1))
    new, _ = apply(referral, action=action, actor=actor, **kwargs)
    return new


def args_for(action: Action, new_receiver: str = NEXT) -> dict:
    """Minimal valid arguments for an action."""
    if action is Action.DECLINE:
        return {"decline_reason": DeclineReason.NO_CAPACITY}
    if action is Action.COMPLETE:
        return {"outcome": Outcome.HELPED}
    if action is Action.FAIL:
        return {"outcome": Outcome.NOT_HELPED}
    if action is Action.FORWARD:
        return {"new_receiver": new_receiver}
    return {}


def canonical_actor(referral: Referral, action: Action) -> str:
    """The party that, by the rules in the brief, performs ``action`` in this situation."""
    if action in (Action.ACKNOWLEDGE, Action.ACCEPT, Action.DECLINE):
        return referral.pending_receiver or referral.receiver
    if action in (Action.START, Action.COMPLETE, Action.FAIL, Action.FORWARD):
        return referral.holder
    if action is Action.EXPIRE_CONSENT:
        return SYSTEM_ACTOR
    return referral.sender  # CANCEL, REPORT_CONTACT_LOST, WITHDRAW_CONSENT


def scenarios() -> dict[str, Referral]:
    """One referral per interesting situation, built only through the public API."""
    s: dict[str, Referral] = {}
    s["requested"] = r = open_()
    s["received"] = r = act(r, Action.ACKNOWLEDGE, RECEIVER)
    s["accepted"] = r = act(r, Action.ACCEPT, RECEIVER)
    s["in_progress"] = r = act(r, Action.START, RECEIVER)
    s["handover_requested"] = h = act(r, Action.FORWARD, RECEIVER, new_receiver=NEXT)
    s["handover_received"] = h = act(h, Action.ACKNOWLEDGE, NEXT)
    s["handover_refused"] = act(h, Action.DECLINE, NEXT, decline_reason=DeclineReason.NOT_ELIGIBLE)
    s["declined"] = act(s["received"], Action.DECLINE, RECEIVER, decline_reason=DeclineReason.NO_CAPACITY)
    s["re_requested"] = act(s["declined"], Action.FORWARD, SENDER, new_receiver=THIRD)
    s["completed"] = act(r, Action.COMPLETE, RECEIVER, outcome=Outcome.HELPED)
    s["failed"] = act(r, Action.FAIL, RECEIVER, outcome=Outcome.NOT_HELPED)
    s["cancelled"] = act(s["accepted"], Action.CANCEL, SENDER)
    s["contact_lost"] = act(r, Action.REPORT_CONTACT_LOST, RECEIVER)
    return s
