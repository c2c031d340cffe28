"""Plain-dict snapshots of a referral, for storage adapters (JSON-friendly, round-trips exactly).

``referral_from_dict`` validates codes and structural invariants, so a corrupted row is refused
with InvalidReferral instead of entering the lifecycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .codes import (
    Action,
    CancelReason,
    DeclineReason,
    NeedDomain,
    Outcome,
    Purpose,
    Status,
    Urgency,
    coerce,
)
from .consent import Consent
from .errors import InvalidReferral
from .model import Referral, StatusChange, check_invariants

SNAPSHOT_VERSION = 1


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidReferral(field, f"{value!r} is not an ISO 8601 timestamp") from None


def _opt(enum: Any, value: Any, field: str) -> Any:
    return None if value is None else coerce(enum, value, field, InvalidReferral)


def referral_to_dict(r: Referral) -> dict[str, Any]:
    return {
        "snapshot_version": SNAPSHOT_VERSION,
        "referral_id": r.referral_id,
        "case_id": r.case_id,
        "sender": r.sender,
        "receiver": r.receiver,
        "pending_receiver": r.pending_receiver,
        "holder": r.holder,
        "status": r.status.value,
        "version": r.version,
        "need_domains": [d.value for d in r.need_domains],
        "urgency": r.urgency.value,
        "languages": list(r.languages),
        "purpose": r.purpose.value,
        "consent": {
            "organisations": sorted(r.consent.organisations),
            "purpose": r.consent.purpose.value,
            "valid_until": _ts(r.consent.valid_until),
            "withdrawn_at": _ts(r.consent.withdrawn_at),
        },
        "created_at": _ts(r.created_at),
        "updated_at": _ts(r.updated_at),
        "decline_reason": r.decline_reason and r.decline_reason.value,
        "outcome": r.outcome and r.outcome.value,
        "cancel_reason": r.cancel_reason and r.cancel_reason.value,
        "facts_changes": r.facts_changes,
        "history": [
            {
                "status": h.status.value,
                "at": _ts(h.at),
                "actor": h.actor,
                "action": h.action and h.action.value,
                "code": h.code,
                "receiver": h.receiver,
            }
            for h in r.history
        ],
    }


def referral_from_dict(d: dict[str, Any]) -> Referral:
    try:
        c = d["consent"]
        referral = Referral(
            referral_id=d["referral_id"],
            case_id=d["case_id"],
            sender=d["sender"],
            receiver=d["receiver"],
            pending_receiver=d.get("pending_receiver"),
            holder=d["holder"],
            status=coerce(Status, d["status"], "status", InvalidReferral),
            version=int(d["version"]),
            need_domains=tuple(coerce(NeedDomain, v, "need_domains", InvalidReferral) for v in d["need_domains"]),
            urgency=coerce(Urgency, d["urgency"], "urgency", InvalidReferral),
            languages=tuple(d["languages"]),
            purpose=coerce(Purpose, d["purpose"], "purpose", InvalidReferral),
            consent=Consent(
                frozenset(c["organisations"]),
                c["purpose"],
                _dt(c["valid_until"], "consent.valid_until"),  # type: ignore[arg-type]
                _dt(c.get("withdrawn_at"), "consent.withdrawn_at"),
            ),
            created_at=_dt(d["created_at"], "created_at"),  # type: ignore[arg-type]
            updated_at=_dt(d["updated_at"], "updated_at"),  # type: ignore[arg-type]
            decline_reason=_opt(DeclineReason, d.get("decline_reason"), "decline_reason"),
            outcome=_opt(Outcome, d.get("outcome"), "outcome"),
            cancel_reason=_opt(CancelReason, d.get("cancel_reason"), "cancel_reason"),
            history=tuple(
                StatusChange(
                    coerce(Status, h["status"], "history.status", InvalidReferral),
                    _dt(h["at"], "history.at"),  # type: ignore[arg-type]
                    h["actor"],
                    _opt(Action, h.get("action"), "history.action"),
                    h.get("code"),
                    h.get("receiver"),
                )
                for h in d["history"]
            ),
            facts_changes=int(d.get("facts_changes", 0)),  # absent in snapshots before it existed
        )
    except KeyError as missing:
        raise InvalidReferral(str(missing.args[0]), "missing from the snapshot") from None
    check_invariants(referral)
    return referral
