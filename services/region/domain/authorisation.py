"""Who may read what from the region service's gRPC API. Pure: decisions only, no I/O.

Resolve (a dry run on facts the caller supplies) and ListRegions (the published policy) hold
no case data: any authenticated caller. GetAssignment shows a case's responsibility history:
only the case's parties (sender and receiver agency), coordinators whose scope covers the
responsible region or the proposed handover region (the national coordinator covers all),
and the mesh's own services.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshkernel.principal import Denied, Principal


def may_read_assignment(who: Principal, *, parties: Iterable[str], regions: Iterable[str]) -> None:
    if who.is_system:
        return
    if who.is_agency and who.name in set(parties):
        return
    if any(who.covers_region(region) for region in regions if region):
        return
    raise Denied("not a party to this case nor a coordinator of its region")
