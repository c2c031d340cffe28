"""Binds the pure resolver to its shipped policy file, in the resolver's JSON document form."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.region.domain import LANGUAGES, Decision, RegionPolicy, ResolutionRequest, load_policy, resolve
from services.region.domain.json_io import decision_to_dict, parse_request


@dataclass(frozen=True)
class Resolver:
    """The loaded policy and the decisions over it."""

    policy: RegionPolicy

    @property
    def known_services(self) -> frozenset[str]:
        return frozenset(self.policy.service_kinds)

    def decide(self, document: Any, languages: Iterable[str] = LANGUAGES) -> dict[str, Any]:
        """JSON document in, JSON decision out, its explanation in `languages` (all five unless
        narrowed: the text costs more than the decision, so callers ask only for what they show)."""
        return decision_to_dict(resolve(parse_request(document), self.policy), languages)

    def decide_request(self, request: ResolutionRequest) -> Decision:
        """The domain call itself; the explanation is written only when read."""
        return resolve(request, self.policy)


def load_resolver(policy_path: Path) -> Resolver:
    return Resolver(policy=load_policy(policy_path))
