"""The region worker's directory follows operators' changes (mesh.directory.v1): which regions
each agency serves, as the warm-handover rules need it. No restart needed."""

from __future__ import annotations

import faust

from meshkernel.config import MeshSettings
from meshkernel.directory_feed import DirectoryFeed
from referralmesh.v1 import events_pb2
from services.region.adapters.assigning import Assigner


def directory_listener(assigner: Assigner):
    def changed(change: events_pb2.AgencyDirectoryChanged) -> None:
        # A suspended agency keeps its regions: its accepted handovers before the suspension stay valid.
        assigner.agency_regions[change.agency.agency_id] = frozenset(change.agency.regions_served)

    return changed


def follow_directory(app: faust.App, config: MeshSettings, assigner: Assigner) -> DirectoryFeed:
    feed = DirectoryFeed(config, directory_listener(assigner), client_id=f"{app.conf.id}-directory")

    @app.task
    async def follow() -> None:
        await feed.run()

    return feed
