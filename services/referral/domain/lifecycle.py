"""The closed-loop referral lifecycle: opening a referral and applying commands to it.

Lifecycle (aligned with HL7 FHIR Task, as closed-loop referral standards use)::

    REQUESTED --ACKNOWLEDGE--> RECEIVED --ACCEPT--> ACCEPTED --START--> IN_PROGRESS
        \\-------------ACCEPT-------------/                 --COMPLETE--> COMPLETED
    side exits: DECLINE (REQUESTED/RECEIVED -> DECLINED), CANCEL / WITHDRAW_CONSENT / EXPIRE_CONSENT
    (any open state -> CANCELLED), REPORT_CONTACT_LOST (any open state -> CONTACT_LOST),
    FAIL (ACCEPTED/IN_PROGRESS/DECLINED -> FAILED). Terminal: COMPLETED, CANCELLED, CONTACT_LOST,
    FAILED. ``TRANSITIONS`` is the single source of truth; anything not in it is refused.

DECLINED is *not* terminal: the design says a declined referral "needs a next receiver", so the
holder keeps it and must act (forward it, resume it, or close it), and the stall detector
escalates while it stays DECLINED. Closing it is a deliberate CANCEL / FAIL, never a drop.

Responsibility and warm handover (FORWARD)
------------------------------------------
Exactly one agency, ``holder``, is responsible at every moment: the sender until a receiver
accepts, then that receiver. Responsibility only moves by ACCEPT, so it is never dropped.

* Sender re-addresses after a decline (holder = sender, status DECLINED)::

      FORWARD(new_receiver=B): receiver := B, status := REQUESTED, holder stays the sender.
      The agency that declined is no longer a party.

* Receiver hands over (holder = receiver A, status ACCEPTED / IN_PROGRESS, or DECLINED after an
  earlier refused handover)::

      FORWARD(new_receiver=B): pending_receiver := B, status := REQUESTED (B is being asked;
      acknowledge/accept deadlines restart for B). A stays receiver AND holder meanwhile.
      B ACKNOWLEDGE -> RECEIVED.
      B ACCEPT      -> ACCEPTED, receiver := B, holder := B, pending := None; A is off the referral.
      B DECLINE     -> DECLINED with B's reason, pending := None; A is still receiver and holder.
                       The event has handover=True (refused handover -> national coordinator).
                       A then START-s again (resume, -> IN_PROGRESS), FORWARD-s to someone else,
                       FAIL-s or reports contact lost. Nothing is ever dropped.

  While B is being asked, A cannot START/COMPLETE (status is REQUESTED/RECEIVED), but A can
  report contact lost, and if B stays silent A (or the stall detector as ``system``) may record
  DECLINE with RECEIVER_UNREACHABLE to get the referral back.

Who acts (``permissions.ROLE_ACTIONS`` + ``permissions.situational_refusal``): the agency being
asked (receiver, or pending receiver during a handover) acknowledges / accepts / declines; the
holder starts, completes, fails and forwards; the sender cancels; sender or holder reports
contact lost; any party or the system records consent withdrawal; only the system records
consent expiry. Only parties (sender, receiver, pending receiver) can read (``can_read``).

Consent is checked whenever the referral reaches a new organisation or processing starts
(open, FORWARD, ACCEPT, START). Closing actions never need consent, so a loop can always be
closed, even after consent ran out.

Order of checks in ``apply`` (first failure wins, a refusal changes nothing):
  1. the actor's role may ever perform the action            -> NotPermitted
  2. expected_version == referral.version                    -> StaleVersion
  3. (status, action) in TRANSITIONS                         -> IllegalTransition
  4. this party may do it in this situation (asked / holder) -> NotPermitted
  5. arguments present, absent and valid as the action needs -> InvalidCommand
  6. consent covers the organisation now                     -> ConsentMissing
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType

from .binding import FactPeriod, check_binding_facts
from .codes import (
    ISO_639_1,
    OPAQUE_ID_RE,
    SUCCESS_OUTCOMES,
    Action,
    CancelReason,
    DeclineReason,
    NeedDomain,
    Outcome,
    Purpose,
    Role,
    Status,
    Urgency,
    coerce,
    is_agency_id,
    is_aware,
)
from .consent import Consent
from .errors import (
    ConsentMissing,
    IllegalTransition,
    InvalidCommand,
    InvalidReferral,
    NotPermitted,
    StaleVersion,
)
from .events import EVENT_TYPES, FACTS_CHANGED_EVENT, REQUESTED_EVENT, DomainEvent
from .model import OPEN_STATUSES, Referral, StatusChange
from .permissions import ROLE_ACTIONS, role_of, situational_refusal

_S, _A = Status, Action


def _build_transitions() -> Mapping[tuple[Status, Action], Status]:
    table: dict[tuple[Status, Action], Status] = {
        (_S.REQUESTED, _A.ACKNOWLEDGE): _S.RECEIVED,
        (_S.REQUESTED, _A.ACCEPT): _S.ACCEPTED,
        (_S.RECEIVED, _A.ACCEPT): _S.ACCEPTED,
        (_S.REQUESTED, _A.DECLINE): _S.DECLINED,
        (_S.RECEIVED, _A.DECLINE): _S.DECLINED,
        (_S.ACCEPTED, _A.START): _S.IN_PROGRESS,
        (_S.DECLINED, _A.START): _S.IN_PROGRESS,  # holder resumes after a refused handover
        (_S.IN_PROGRESS, _A.COMPLETE): _S.COMPLETED,
        (_S.ACCEPTED, _A.FAIL): _S.FAILED,
        (_S.IN_PROGRESS, _A.FAIL): _S.FAILED,
        (_S.DECLINED, _A.FAIL): _S.FAILED,  # holder gives up after a refused handover
        (_S.ACCEPTED, _A.FORWARD): _S.REQUESTED,  # warm handover by the receiver
        (_S.IN_PROGRESS, _A.FORWARD): _S.REQUESTED,
        (_S.DECLINED, _A.FORWARD): _S.REQUESTED,  # next receiver after a decline
    }
    for status in OPEN_STATUSES:
        table[(status, _A.CANCEL)] = _S.CANCELLED
        table[(status, _A.WITHDRAW_CONSENT)] = _S.CANCELLED
        table[(status, _A.EXPIRE_CONSENT)] = _S.CANCELLED
        table[(status, _A.REPORT_CONTACT_LOST)] = _S.CONTACT_LOST
    return MappingProxyType(table)


TRANSITIONS: Mapping[tuple[Status, Action], Status] = _build_transitions()

_CANCEL_REASONS = {
    _A.CANCEL: CancelReason.BY_SENDER,
    _A.WITHDRAW_CONSENT: CancelReason.CONSENT_WITHDRAWN,
    _A.EXPIRE_CONSENT: CancelReason.CONSENT_EXPIRED,
}
# Actions that bring the client's data to a new organisation or start processing.
_NEEDS_CONSENT = frozenset({_A.ACCEPT, _A.START, _A.FORWARD})


# ----------------------------------------------------------------------------- opening


def open_referral(
    *,
    referral_id: str,
    case_id: str,
    sender: str,
    receiver: str,
    need_domains: Iterable[NeedDomain | str],
    urgency: Urgency | str,
    languages: Iterable[str],
    consent: Consent,
    purpose: Purpose | str,
    now: datetime,
) -> tuple[Referral, DomainEvent]:
    """Open a referral from ``sender`` to ``receiver`` (status REQUESTED, version 1).

    Refuses with InvalidReferral (naming the field) or ConsentMissing; the sender is holder.
    """
    if not is_aware(now):
        raise InvalidReferral("now", "must be a timezone-aware datetime")
    for field, value in (("referral_id", referral_id), ("case_id", case_id)):
        if not isinstance(value, str) or not OPAQUE_ID_RE.match(value):
            raise InvalidReferral(field, "must be an opaque id (1-128 letters, digits, . _ : -)")
    for field, value in (("sender", sender), ("receiver", receiver)):
        if not is_agency_id(value):
            raise InvalidReferral(field, "is not a valid agency id")
    if sender == receiver:
        raise InvalidReferral("receiver", "an agency cannot refer a client to itself")
    domains = _need_domains(need_domains)
    langs = _languages(languages)
    urgency = coerce(Urgency, urgency, "urgency", InvalidReferral)
    purpose = coerce(Purpose, purpose, "purpose", InvalidReferral)
    if not isinstance(consent, Consent):
        raise InvalidReferral("consent", "a recorded Consent is required")
    why = consent.why_not(receiver, purpose, now)
    if why is not None:
        raise ConsentMissing(f"cannot refer to {receiver}: {why}", referral_id=referral_id, agency=receiver)

    referral = Referral(
        referral_id=referral_id,
        case_id=case_id,
        sender=sender,
        receiver=receiver,
        status=Status.REQUESTED,
        version=1,
        need_domains=domains,
        urgency=urgency,
        languages=langs,
        consent=consent,
        purpose=purpose,
        created_at=now,
        updated_at=now,
        holder=sender,
        history=(StatusChange(Status.REQUESTED, now, sender, None, None, receiver),),
    )
    event = _event(
        REQUESTED_EVENT,
        None,
        None,
        referral,
        actor=sender,
        now=now,
        previous_holder=None,
        handover=False,
    )
    return referral, event


def _need_domains(values: Iterable[NeedDomain | str]) -> tuple[NeedDomain, ...]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise InvalidReferral("need_domains", "must be a list of need domain codes")
    found = {coerce(NeedDomain, v, "need_domains", InvalidReferral) for v in values}
    if not found:
        raise InvalidReferral("need_domains", "name at least one need domain")
    return tuple(d for d in NeedDomain if d in found)  # canonical order, no duplicates


def _languages(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise InvalidReferral("languages", "must be a list of ISO 639-1 codes")
    langs: list[str] = []
    for index, value in enumerate(values):
        if value not in ISO_639_1:
            raise InvalidReferral("languages", f"entry {index} is not an ISO 639-1 code (e.g. 'nl')")
        if value not in langs:
            langs.append(value)  # keep the client's order of preference
    if not langs:
        raise InvalidReferral("languages", "name at least one language the client speaks")
    return tuple(langs)


# ----------------------------------------------------------------------------- commands


def apply(
    referral: Referral,
    *,
    action: Action | str,
    actor: str,
    expected_version: int,
    now: datetime,
    decline_reason: DeclineReason | str | None = None,
    outcome: Outcome | str | None = None,
    new_receiver: str | None = None,
) -> tuple[Referral, DomainEvent]:
    """Apply one command; return the new referral (version + 1) and its event, or raise.

    See the module docstring for the order of checks. A refusal never changes anything.
    """
    action = coerce(Action, action, "action", InvalidCommand)
    if not isinstance(actor, str) or not actor:
        raise InvalidCommand("actor", "the acting agency is required")
    if not is_aware(now):
        raise InvalidCommand("now", "must be a timezone-aware datetime")

    role = role_of(referral, actor)
    if action not in ROLE_ACTIONS[role]:
        party = role is not Role.NONE
        raise NotPermitted(
            f"{actor} may not {action.value.lower()} referral {referral.referral_id}"
            + ("" if party else ": not a party to it"),
            referral_id=referral.referral_id,
            actor=actor,
            action=action.value,
            party=party,
        )
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidCommand("expected_version", "must be an integer")
    if expected_version != referral.version:
        raise StaleVersion(
            f"referral {referral.referral_id} is at version {referral.version}, "
            f"not {expected_version}; read it again and retry",
            referral_id=referral.referral_id,
            expected=expected_version,
            actual=referral.version,
        )
    to_status = TRANSITIONS.get((referral.status, action))
    if to_status is None:
        raise IllegalTransition(
            f"cannot {action.value.lower()} a referral that is {referral.status.value}"
            + (" (it is closed)" if referral.is_terminal else ""),
            referral_id=referral.referral_id,
            status=referral.status.value,
            action=action.value,
        )
    if decline_reason is not None:
        decline_reason = coerce(DeclineReason, decline_reason, "decline_reason", InvalidCommand)
    if outcome is not None:
        outcome = coerce(Outcome, outcome, "outcome", InvalidCommand)

    why = situational_refusal(referral, actor, action, decline_reason)
    if why is not None:
        raise NotPermitted(why, referral_id=referral.referral_id, actor=actor, action=action.value, party=True)
    _check_arguments(referral, action, actor, decline_reason, outcome, new_receiver)
    _check_consent(referral, action, actor, now, new_receiver)
    return _transition(referral, action, actor, to_status, now, decline_reason, outcome, new_receiver)


def allowed_actions(referral: Referral, actor: str) -> frozenset[Action]:
    """Actions ``actor`` may take now (role, lifecycle and situation; not codes or consent).

    Uses the same checks as ``apply``, so the two cannot disagree. DECLINE by the holder or the
    system is listed because it may record RECEIVER_UNREACHABLE.
    """
    role = role_of(referral, actor)
    allowed = set()
    for action in ROLE_ACTIONS[role]:
        if (referral.status, action) not in TRANSITIONS:
            continue
        reason = DeclineReason.RECEIVER_UNREACHABLE if actor != referral.addressee else None
        if situational_refusal(referral, actor, action, reason) is None:
            allowed.add(action)
    return frozenset(allowed)


def _check_arguments(
    referral: Referral,
    action: Action,
    actor: str,
    decline_reason: DeclineReason | None,
    outcome: Outcome | None,
    new_receiver: str | None,
) -> None:
    needed = {
        _A.DECLINE: "decline_reason",
        _A.COMPLETE: "outcome",
        _A.FAIL: "outcome",
        _A.FORWARD: "new_receiver",
    }.get(action)
    given = {"decline_reason": decline_reason, "outcome": outcome, "new_receiver": new_receiver}
    for field, value in given.items():
        if field == needed and value is None:
            raise InvalidCommand(
                field,
                f"{action.value.lower()} needs a {field} code"
                if field != "new_receiver"
                else "forward needs a new_receiver",
            )
        if field != needed and value is not None:
            # Refusing extras catches adapter bugs (e.g. a reason sent with the wrong action).
            raise InvalidCommand(field, f"{action.value.lower()} does not take a {field}")

    if action is _A.DECLINE:
        if decline_reason is DeclineReason.RECEIVER_UNREACHABLE and actor == referral.addressee:
            raise InvalidCommand(
                "decline_reason",
                "RECEIVER_UNREACHABLE is recorded by the holder or the system, not the receiver",
            )
    elif action is _A.FAIL:
        if outcome in SUCCESS_OUTCOMES:
            raise InvalidCommand("outcome", f"a failed referral cannot have outcome {outcome}")
    elif action is _A.FORWARD:
        if not is_agency_id(new_receiver):
            raise InvalidCommand("new_receiver", "is not a valid agency id")
        if new_receiver in (referral.sender, referral.holder):
            raise InvalidCommand("new_receiver", f"{new_receiver} already holds or sent this referral")


def _check_consent(referral: Referral, action: Action, actor: str, now: datetime, new_receiver: str | None) -> None:
    if action is _A.EXPIRE_CONSENT:
        if now < referral.consent.valid_until:
            raise InvalidCommand("now", f"consent is still valid until {referral.consent.valid_until.isoformat()}")
        return
    if action not in _NEEDS_CONSENT:
        return
    agency = new_receiver if action is _A.FORWARD else actor
    why = referral.consent.why_not(agency, referral.purpose, now)  # type: ignore[arg-type]
    if why is not None:
        raise ConsentMissing(
            f"cannot {action.value.lower()} referral {referral.referral_id} for {agency}: {why}",
            referral_id=referral.referral_id,
            agency=agency,
        )


# ----------------------------------------------------------------------------- changed facts


def change_facts(
    referral: Referral,
    *,
    actor: str,
    expected_version: int,
    now: datetime,
    asked_in: str,
    residence: Iterable[FactPeriod] = (),
    work: Iterable[FactPeriod] = (),
    grew_up_in: Iterable[str] = (),
    family_in: Iterable[str] = (),
) -> tuple[Referral, DomainEvent]:
    """Record changed binding facts: version + 1, status unchanged, a ReferralFactsChanged event.

    The sender or the current holder of an open referral may do it (they know the client); the
    facts replace the stored ones as a whole and are checked like at creation, against the
    stored ``asked_in`` (where help was asked does not change). The facts themselves are not
    part of the referral value; the caller stores them and puts them on the outbox event.

    Why a function of its own and not an ``Action`` through ``apply``: a facts change is no
    step in the lifecycle. As an Action it would need a self-loop for every open status in
    ``TRANSITIONS``, a role in ``ROLE_ACTIONS`` and a status-history entry whose status equals
    the previous one, and every TRANSITIONS-driven test and the state machine would have to
    learn that some actions do not move. Kept apart, the lifecycle stays exactly as it was;
    the version (optimistic concurrency, event ids) still counts every change, through
    ``Referral.facts_changes``, and the status history stays a history of statuses.

    Order of checks (first failure wins, a refusal changes nothing), as in ``apply``:
      1. the actor is a party                       -> NotPermitted (party=False)
      2. expected_version == referral.version       -> StaleVersion
      3. the referral is open                       -> IllegalTransition
      4. the actor is the sender or the holder      -> NotPermitted (party=True)
      5. the facts are well-formed                  -> InvalidReferral (naming the field, never
                                                       repeating what was sent)
    """
    if not isinstance(actor, str) or not actor:
        raise InvalidCommand("actor", "the acting agency is required")
    if not is_aware(now):
        raise InvalidCommand("now", "must be a timezone-aware datetime")
    if actor not in referral.parties:
        raise NotPermitted(
            f"{actor} may not change the facts of referral {referral.referral_id}: not a party to it",
            referral_id=referral.referral_id,
            actor=actor,
            action="UPDATE_FACTS",
            party=False,
        )
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidCommand("expected_version", "must be an integer")
    if expected_version != referral.version:
        raise StaleVersion(
            f"referral {referral.referral_id} is at version {referral.version}, "
            f"not {expected_version}; read it again and retry",
            referral_id=referral.referral_id,
            expected=expected_version,
            actual=referral.version,
        )
    if not referral.is_open:
        raise IllegalTransition(
            f"cannot change the facts of a referral that is {referral.status.value} (it is closed)",
            referral_id=referral.referral_id,
            status=referral.status.value,
            action="UPDATE_FACTS",
        )
    if actor not in (referral.sender, referral.holder):
        raise NotPermitted(
            f"only the sender or the holder ({referral.holder}) may change the facts of referral "
            f"{referral.referral_id}",
            referral_id=referral.referral_id,
            actor=actor,
            action="UPDATE_FACTS",
            party=True,
        )
    check_binding_facts(
        asked_in=asked_in, residence=residence, work=work, grew_up_in=grew_up_in, family_in=family_in, today=now.date()
    )
    new = replace(referral, version=referral.version + 1, updated_at=now, facts_changes=referral.facts_changes + 1)
    event = _event(
        FACTS_CHANGED_EVENT, None, referral.status, new, actor=actor, now=now, previous_holder=None, handover=False
    )
    return new, replace(event, languages=())  # languages only travel when a new agency is asked


# ----------------------------------------------------------------------------- transition


def _transition(
    r: Referral,
    action: Action,
    actor: str,
    to_status: Status,
    now: datetime,
    decline_reason: DeclineReason | None,
    outcome: Outcome | None,
    new_receiver: str | None,
) -> tuple[Referral, DomainEvent]:
    changes: dict[str, object] = {}
    handover = r.in_handover
    code: str | None = None

    if action is _A.ACCEPT:
        if r.pending_receiver is not None:  # handover accepted: the previous holder steps off
            changes.update(receiver=r.pending_receiver, pending_receiver=None)
        changes["holder"] = r.pending_receiver or r.receiver
    elif action is _A.DECLINE:
        # The holder is unchanged either way: the sender (first request) or the receiver
        # that tried to hand over. That is what "a refused handover never drops" means.
        changes.update(decline_reason=decline_reason, pending_receiver=None)
        code = decline_reason.value  # type: ignore[union-attr]
    elif action is _A.START:
        changes["decline_reason"] = None  # resuming after a refused handover
    elif action in (_A.COMPLETE, _A.FAIL):
        changes["outcome"] = outcome
        code = outcome.value  # type: ignore[union-attr]
    elif action is _A.FORWARD:
        changes["decline_reason"] = None  # a new request starts
        if r.holder == r.sender:  # re-address: the receiver that declined is replaced
            changes["receiver"] = new_receiver
        else:  # warm handover: the receiver stays holder until new_receiver accepts
            changes["pending_receiver"] = new_receiver
            handover = True
    elif action in _CANCEL_REASONS:
        changes["cancel_reason"] = _CANCEL_REASONS[action]
        code = _CANCEL_REASONS[action].value
        if action is _A.WITHDRAW_CONSENT:
            changes["consent"] = r.consent.withdrawn(now)

    interim = replace(r, status=to_status, **changes)  # type: ignore[arg-type]
    entry = StatusChange(to_status, now, actor, action, code, interim.pending_receiver or interim.receiver)
    new = replace(interim, version=r.version + 1, updated_at=now, history=r.history + (entry,))
    event = _event(
        EVENT_TYPES[action],
        action,
        r.status,
        new,
        actor=actor,
        now=now,
        previous_holder=r.holder if new.holder != r.holder else None,
        handover=handover,
    )
    return new, event


def _event(
    event_type: str,
    action: Action | None,
    from_status: Status | None,
    r: Referral,
    *,
    actor: str,
    now: datetime,
    previous_holder: str | None,
    handover: bool,
) -> DomainEvent:
    asks_new_agency = action is None or action is _A.FORWARD
    return DomainEvent(
        event_type=event_type,
        referral_id=r.referral_id,
        case_id=r.case_id,
        action=action,
        from_status=from_status,
        to_status=r.status,
        actor=actor,
        version=r.version,
        occurred_at=now,
        sender=r.sender,
        receiver=r.receiver,
        pending_receiver=r.pending_receiver,
        addressee=r.addressee,
        holder=r.holder,
        previous_holder=previous_holder,
        handover=handover,
        urgency=r.urgency,
        need_domains=r.need_domains,
        languages=r.languages if asks_new_agency else (),
        decline_reason=r.decline_reason if action is _A.DECLINE else None,
        outcome=r.outcome if action in (_A.COMPLETE, _A.FAIL) else None,
        cancel_reason=r.cancel_reason,
    )
