"""Binds the pure resolver to its shipped policy file, in the resolver's JSON document form."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from services.region.domain import load_policy, resolve
from services.region.domain.json_io import decision_to_dict, parse_request


def policy_decider(policy_path: Path) -> tuple[Callable[[dict], dict], frozenset[str]]:
    policy = load_policy(policy_path)

    def decide(document: dict) -> dict:
        return decision_to_dict(resolve(parse_request(document), policy))

    return decide, frozenset(policy.service_kinds)
