"""Errors of the region resolver.

Both errors carry the *place* of the problem separately from the problem itself, so a CLI can
print one line and an adapter (Faust, gRPC) can put the field into a structured error reply.
"""

from __future__ import annotations


class RegionError(Exception):
    """Base class, so callers can catch everything the resolver refuses in one place."""


class InvalidInput(RegionError):
    """A resolution request is wrong. `field` is the path in the request, e.g. `facts.residence[0].to`."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class PolicyError(RegionError):
    """The region configuration is wrong. `where` is the path in the file,
    e.g. `regions[2].services.exit_programme.rules[0].years`, or `line 12` for YAML syntax."""

    def __init__(self, where: str, problem: str, source: str | None = None) -> None:
        self.where = where
        self.problem = problem
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}: {problem}")
