"""Who may do what on a referral.

Two layers, checked at different moments by ``lifecycle.apply``:

1. ``ROLE_ACTIONS``: what a role may *ever* do (checked first, before the version, so a
   stranger learns nothing about the referral's state).
2. ``situational_refusal``: whether this party may do it *now* (checked after the transition is
   known to be legal): only the agency being asked may answer a request, only the holder may
   work on or forward the referral.
"""

from __future__ import annotations

from collections.abc import Mapping

from .codes import SYSTEM_ACTOR, Action, DeclineReason, Role
from .model import Referral

ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = {
    Role.SENDER: frozenset(
        {
            Action.FORWARD,  # after a decline: ask the next receiver
            Action.CANCEL,
            Action.REPORT_CONTACT_LOST,
            Action.DECLINE,  # only as RECEIVER_UNREACHABLE on behalf of a silent receiver
            Action.WITHDRAW_CONSENT,
        }
    ),
    Role.RECEIVER: frozenset(
        {
            Action.ACKNOWLEDGE,
            Action.ACCEPT,
            Action.DECLINE,
            Action.START,
            Action.COMPLETE,
            Action.FAIL,
            Action.FORWARD,  # warm handover
            Action.REPORT_CONTACT_LOST,
            Action.WITHDRAW_CONSENT,
        }
    ),
    Role.PENDING_RECEIVER: frozenset({Action.ACKNOWLEDGE, Action.ACCEPT, Action.DECLINE, Action.WITHDRAW_CONSENT}),
    Role.SYSTEM: frozenset({Action.WITHDRAW_CONSENT, Action.EXPIRE_CONSENT, Action.DECLINE}),
    Role.NONE: frozenset(),
}

_ANSWERS = frozenset({Action.ACKNOWLEDGE, Action.ACCEPT, Action.DECLINE})
_HOLDER_ONLY = frozenset({Action.START, Action.COMPLETE, Action.FAIL, Action.FORWARD})


def role_of(referral: Referral, actor: str) -> Role:
    if actor == SYSTEM_ACTOR:
        return Role.SYSTEM
    if actor == referral.sender:
        return Role.SENDER
    if actor == referral.receiver:
        return Role.RECEIVER
    if actor is not None and actor == referral.pending_receiver:
        return Role.PENDING_RECEIVER
    return Role.NONE


def can_read(referral: Referral, agency_id: str) -> bool:
    """An agency sees only referrals it is party to: sender, receiver or handover target.

    A receiver that declined is replaced when the sender forwards, and a previous holder drops
    off when the handover target accepts; from then on they no longer see the referral.
    """
    return agency_id != SYSTEM_ACTOR and agency_id in referral.parties


def situational_refusal(
    referral: Referral, actor: str, action: Action, decline_reason: DeclineReason | None
) -> str | None:
    """Why ``actor`` may not do ``action`` in the referral's present situation; None if it may."""
    if action in _ANSWERS:
        if actor == referral.addressee:
            return None
        # A silent receiver would otherwise strand the referral: the holder (or the stall
        # detector, as system) may record that it did not answer, which frees the holder to
        # carry on or ask someone else. Any other reason is the asked receiver's own call.
        if (
            action is Action.DECLINE
            and (actor == referral.holder or actor == SYSTEM_ACTOR)
            and decline_reason is DeclineReason.RECEIVER_UNREACHABLE
        ):
            return None
        if action is Action.DECLINE and (actor == referral.holder or actor == SYSTEM_ACTOR):
            return (
                f"{actor} is not the agency being asked; it may only record "
                f"{DeclineReason.RECEIVER_UNREACHABLE.value} for {referral.addressee}"
            )
        return f"only {referral.addressee}, the agency being asked, may {action.value.lower()}"
    if action in _HOLDER_ONLY and actor != referral.holder:
        return f"only {referral.holder}, which is responsible now, may {action.value.lower()}"
    if action is Action.REPORT_CONTACT_LOST and actor not in (referral.sender, referral.holder):
        # Before accepting, a receiver that cannot reach the client declines with
        # CLIENT_UNREACHABLE; the sender (still responsible) may have other ways to reach them.
        return f"{actor} has not accepted this referral; decline with CLIENT_UNREACHABLE instead"
    return None
