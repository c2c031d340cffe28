"""Who calls, as the application layers' authorisation policies see it. Pure: no I/O.

The gRPC adapters build a Principal from the verified client certificate (meshkernel/tls.py)
or, in MESH_MODE=local without TLS only, from development headers (meshkernel/callers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

AGENCY, COORDINATOR, SYSTEM, OPERATOR = "agency", "coordinator", "system", "operator"
NATIONAL = "NATIONAL"  # the scope of a national coordinator: every region


@dataclass(frozen=True)
class Principal:
    role: str  # AGENCY, COORDINATOR, SYSTEM or OPERATOR (the mesh's operators: agency directory)
    name: str  # agency id, coordinator user name, or service name
    scope: str | None = None  # coordinators: a region code, or NATIONAL

    @property
    def is_agency(self) -> bool:
        return self.role == AGENCY

    @property
    def is_coordinator(self) -> bool:
        return self.role == COORDINATOR and bool(self.scope)

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def is_system(self) -> bool:
        return self.role == SYSTEM

    def covers_region(self, region: str) -> bool:
        """A coordinator whose scope includes `region` (the national coordinator's includes all)."""
        return self.is_coordinator and (self.scope == NATIONAL or (bool(region) and self.scope == region))

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


class Denied(Exception):
    """The principal may not do this; the text says why, without case data."""
