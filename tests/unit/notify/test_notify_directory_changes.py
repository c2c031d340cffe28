"""The notify service's names follow the directory's changes (mesh.directory.v1)."""

from __future__ import annotations

from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.directory import Names


def _names() -> Names:
    return Names(agencies={}, regions={"GM0363": "Amsterdam"}, help_name="", help_phone="", help_url="")


def _change(kind: str, suspended: bool = False, agency_id: str = "central-zwolle") -> events_pb2.AgencyDirectoryChanged:
    return events_pb2.AgencyDirectoryChanged(
        change="SUSPENDED" if suspended else "ADDED",
        agency=common_pb2.DirectoryAgency(
            agency_id=agency_id,
            client_display_name="Regional Support Desk Zwolle",
            kind=kind,
            regions_served=["GM0363"],
            suspended=suspended,
        ),
    )


def test_an_added_agency_is_named_by_its_neutral_name():
    names = _names()
    names.apply(_change("shelter", agency_id="shelter-zwolle"))
    assert names.agency("shelter-zwolle") == "Regional Support Desk Zwolle"


def test_an_added_central_municipality_becomes_its_regions_desk():
    names = _names()
    names.apply(_change("central_municipality"))
    assert names.client_organisation(None, "GM0363") == "Regional Support Desk Zwolle"


def test_a_suspended_agency_keeps_its_name_but_becomes_no_desk():
    names = _names()
    names.apply(_change("central_municipality", suspended=True))
    assert names.agency("central-zwolle") == "Regional Support Desk Zwolle"
    assert names.client_organisation(None, "GM0363") == "Amsterdam"
