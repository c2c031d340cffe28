"""Names the notify service shows people: agencies and regions (from the agency directory and
the region policy) and the independent help line (config/client_help.yaml).

Client messages name an agency only by its neutral ``client_display_name`` (a message can be
read on a lock screen; "Voices Together, sex worker peer support" must never appear there), and
places by their Dutch names from the region policy, the names the explanations use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshkernel.config import MeshSettings
from meshkernel.directory_feed import DirectoryFeed
from referencedata import AgencyKind, load_directory
from referralmesh.v1 import events_pb2


@dataclass(frozen=True)
class Names:
    agencies: dict[str, str]  # agency id -> neutral client display name
    regions: dict[str, str]  # region code -> Dutch place name
    help_name: str
    help_phone: str
    help_url: str
    # region code -> client display name of the region's central municipality desk
    region_desks: dict[str, str] = field(default_factory=dict)

    def agency(self, agency_id: str) -> str | None:
        """The agency's neutral name for clients; None when unknown (never its id or full name)."""
        return self.agencies.get(agency_id)

    def region(self, code: str) -> str:
        return self.regions.get(code, code)

    def apply(self, change: events_pb2.AgencyDirectoryChanged) -> None:
        """An operator's directory change (mesh.directory.v1); a suspended agency keeps its
        name, which its earlier referrals' messages and alerts still show."""
        agency = change.agency
        self.agencies[agency.agency_id] = agency.client_display_name
        if agency.kind == AgencyKind.CENTRAL_MUNICIPALITY.value and not agency.suspended:
            for code in agency.regions_served:
                self.region_desks.setdefault(code, agency.client_display_name)

    def client_organisation(self, receiver: str | None, region: str) -> str:
        """Who helps the client now, as a client may read it: the receiving agency, else the
        responsible region's central municipality desk, else the region itself."""
        if receiver and (name := self.agency(receiver)):
            return name
        return self.region_desks.get(region) or self.region(region)


def _yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def load_names(config: MeshSettings) -> Names:
    directory = load_directory(config.agency_directory_path)
    policy = _yaml(config.region_policy_path)
    regions = dict(directory.regions)
    # The region policy's names win: they are the Dutch place names the explanations use.
    regions.update({entry["code"]: entry.get("name", entry["code"]) for entry in policy.get("regions", [])})
    desks: dict[str, str] = {}
    for agency in directory.search(kind=AgencyKind.CENTRAL_MUNICIPALITY):
        for code in agency.regions_served:
            desks.setdefault(code, agency.client_display_name)
    help_line = _yaml(config.notify_client_help_path)
    return Names(
        agencies={agency.agency_id: agency.client_display_name for agency in directory},
        regions=regions,
        help_name=help_line.get("name", ""),
        help_phone=help_line.get("phone", ""),
        help_url=help_line.get("url", ""),
        region_desks=desks,
    )


def follow_directory(app, config: MeshSettings, names: Names) -> DirectoryFeed:
    """Keep `names` in step with the directory's changes, in every replica, without a restart."""
    feed = DirectoryFeed(config, names.apply, client_id=f"{app.conf.id}-directory")

    @app.task
    async def follow() -> None:
        await feed.run()

    return feed
