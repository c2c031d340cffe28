"""Who may do what on the notify service's gRPC API. Pure: decisions only, no I/O.

- WatchAlerts: coordinators only, and each sees only their scope (a region, or every region
  for the national coordinator). Asking for a region outside one's scope is refused rather
  than silently narrowed, so a misconfigured client notices.
- AcknowledgeAlert: a coordinator identity (certificate, or a development header in local
  mode); whether the alert is in their scope is the alert domain's rule (alerts.acknowledge).
- SealContact: an agency party to the case; on a case the mesh does not know yet (the sender
  seals before it creates the referral) the first sealing agency becomes a party.
- EraseClient: an agency party to the case, nobody else (crypto-shredding cannot be undone).
- ListClientMessages: an agency party to the case (what became of the client's messages,
  codes only).
Parties are the case's sender and receiver as the assignments name them, plus the sealing agency.
"""

from __future__ import annotations

from meshkernel.principal import NATIONAL, Denied, Principal
from services.notify.domain.alerts import Coordinator


def watch_regions(who: Principal, requested: set[str]) -> set[str] | None:
    """The regions `who` may watch given the ones asked for; None means every region."""
    if not who.is_coordinator:
        raise Denied("only coordinators may watch alerts")
    if who.scope == NATIONAL:
        return set(requested) or None
    outside = {region for region in requested if region != who.scope}
    if outside:
        raise Denied("you may watch only the alerts of your own region")
    return {who.scope}  # type: ignore[arg-type]


def acting_coordinator(who: Principal, display_name: str = "") -> Coordinator:
    if not who.is_coordinator:
        raise Denied("only a coordinator may act on an alert")
    return Coordinator(who.name, who.scope or "", display_name)


def may_seal_contact(who: Principal, parties: frozenset[str]) -> None:
    if not who.is_agency:
        raise Denied("only an agency may seal a client's contact details")
    if parties and who.name not in parties:
        raise Denied("you are not a party to this case")


def may_erase_client(who: Principal, parties: frozenset[str]) -> None:
    if not who.is_agency:
        raise Denied("only an agency party to the case may erase a client")
    if who.name not in parties:
        raise Denied("you are not a party to this case")


def may_read_client_messages(who: Principal, parties: frozenset[str]) -> None:
    if not who.is_agency:
        raise Denied("only an agency party to the case may see its client messages")
    if who.name not in parties:
        raise Denied("you are not a party to this case")
