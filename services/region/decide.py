"""Binds the pure resolver to its shipped policy file, in the resolver's JSON document form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.region.domain import RegionPolicy, load_policy, resolve
from services.region.domain.json_io import decision_to_dict, parse_request

Decide = Callable[[dict], dict]


@dataclass(frozen=True)
class Resolver:
    """The loaded policy and the decide function over it (JSON document in, JSON decision out)."""

    policy: RegionPolicy
    decide: Decide

    @property
    def known_services(self) -> frozenset[str]:
        return frozenset(self.policy.service_kinds)


def load_resolver(policy_path: Path) -> Resolver:
    policy = load_policy(policy_path)

    def decide(document: dict) -> dict:
        return decision_to_dict(resolve(parse_request(document), policy))

    return Resolver(policy=policy, decide=decide)


def policy_decider(policy_path: Path) -> tuple[Decide, frozenset[str]]:
    resolver = load_resolver(policy_path)
    return resolver.decide, resolver.known_services
