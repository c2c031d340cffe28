"""Names the notify service shows people: agencies and regions (from the agency directory and
the region policy) and the independent help line (config/client_help.yaml)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from meshkernel.config import MeshSettings


@dataclass(frozen=True)
class Names:
    agencies: dict[str, str]
    regions: dict[str, str]
    help_name: str
    help_phone: str
    help_url: str

    def agency(self, agency_id: str) -> str:
        return self.agencies.get(agency_id, agency_id)

    def region(self, code: str) -> str:
        return self.regions.get(code, code)


def _yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def load_names(config: MeshSettings) -> Names:
    directory = _yaml(config.agency_directory_path)
    policy = _yaml(config.region_policy_path)
    regions = {entry["code"]: entry.get("name", entry["code"]) for entry in policy.get("regions", [])}
    regions.update(directory.get("regions") or {})
    help_line = _yaml(config.notify_client_help_path)
    return Names(
        agencies={entry["id"]: entry.get("name", entry["id"]) for entry in directory.get("agencies", [])},
        regions=regions,
        help_name=help_line.get("name", ""), help_phone=help_line.get("phone", ""), help_url=help_line.get("url", ""),
    )
