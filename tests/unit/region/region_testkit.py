"""Shared helpers for the region resolver tests (imported package-qualified, like every test helper)."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import yaml

from services.region.domain import (
    BindingFacts,
    ResidencePeriod,
    ResolutionRequest,
    WorkPeriod,
    load_policy,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED_CONFIG = REPO / "services" / "region" / "config" / "regions.yaml"
SHIPPED = load_policy(SHIPPED_CONFIG)

AMSTERDAM, ROTTERDAM, DEN_HAAG, UTRECHT, GRONINGEN, EINDHOVEN = (
    "GM0363",
    "GM0599",
    "GM0518",
    "GM0344",
    "GM0014",
    "GM0772",
)
DECIDED = date(2026, 11, 1)


def shipped_data() -> dict:
    """A fresh, mutable copy of the shipped configuration as plain data."""
    return copy.deepcopy(yaml.safe_load(SHIPPED_CONFIG.read_text(encoding="utf-8")))


def inline_data() -> dict:
    """The shipped configuration with every region's municipalities listed inline instead of
    taken from the shared region data (the format small and test tables use)."""
    data = shipped_data()
    del data["membership"]
    for entry in data["regions"]:
        region = SHIPPED.region(entry["code"])
        assert region is not None
        entry["municipalities"] = [{"code": m.code, "name": m.name} for m in region.municipalities]
    return data


def region_index(data: dict, code: str) -> int:
    return next(i for i, entry in enumerate(data["regions"]) if entry["code"] == code)


def lived(municipality: str, start: str, end: str | None = None, registered: bool = True) -> ResidencePeriod:
    return ResidencePeriod(
        municipality, date.fromisoformat(start), date.fromisoformat(end) if end else None, registered
    )


def worked(municipality: str, start: str, end: str | None = None) -> WorkPeriod:
    return WorkPeriod(municipality, date.fromisoformat(start), date.fromisoformat(end) if end else None)


def request(
    asked_in: str = AMSTERDAM,
    service: str = "shelter",
    *,
    residence=(),
    work=(),
    grew_up_in=(),
    family_in=(),
    current_region: str | None = None,
    decision_date: date = DECIDED,
) -> ResolutionRequest:
    return ResolutionRequest(
        asked_in=asked_in,
        service=service,
        decision_date=decision_date,
        current_region=current_region,
        facts=BindingFacts(
            residence=tuple(residence), grew_up_in=tuple(grew_up_in), family_in=tuple(family_in), work=tuple(work)
        ),
    )


EXAMPLE_INPUT = {
    "asked_in": "GM0363",
    "service": "shelter",
    "decision_date": "2026-11-01",
    "current_region": None,
    "facts": {
        "residence": [{"municipality": "GM0014", "from": "2015-01-01", "to": "2026-10-01", "registered": True}],
        "grew_up_in": ["GM0599"],
        "family_in": [],
        "work": [{"municipality": "GM0363", "from": "2025-01-01", "to": None}],
    },
}
