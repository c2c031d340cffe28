"""The agency directory as operators change it (services/referral/domain/agency_directory.py)."""

from __future__ import annotations

import pytest

from referencedata.agencies import agency_fields, load_directory
from services.referral.domain.agency_directory import (
    ADDED,
    SUSPENDED,
    UPDATED,
    AgencyAlreadySuspended,
    AgencyBook,
    AgencyExists,
    DirectoryEntry,
    InvalidAgency,
    NoSuchAgency,
    StaleAgencyVersion,
    entry_fields,
    entry_from_fields,
    receiver_refusal,
    validated_agency,
)

SHIPPED = load_directory()
REGIONS = dict(SHIPPED.regions)

NEW = {
    "id": "shelter-zwolle",
    "name": "Harbour Light Shelter Zwolle",
    "client_display_name": "Harbour Light Zwolle",
    "kind": "shelter",
    "oin": "99990000000000000777",
    "regions_served": ["GM0363"],
    "need_domains": ["shelter", "health"],
    "languages": ["nl", "en"],
    "accepting": True,
}


@pytest.fixture
def book():
    return AgencyBook((DirectoryEntry(a, 1) for a in SHIPPED), REGIONS)


def test_an_added_agency_is_found_and_matched(book):
    change = book.add(validated_agency(NEW, REGIONS), "op")
    assert (change.change, change.entry.version, change.operator) == (ADDED, 1, "op")
    directory = book.directory()
    assert directory.get("shelter-zwolle") is not None
    assert directory.by_oin(NEW["oin"]).agency_id == "shelter-zwolle"
    assert "shelter-zwolle" in [a.agency_id for a in directory.search(domain="shelter", region="GM0363")]


@pytest.mark.parametrize("clash", ["id", "oin"])
def test_an_agency_id_or_oin_belongs_to_one_agency(book, clash):
    taken = next(iter(SHIPPED))
    fields = dict(NEW, **({"id": taken.agency_id} if clash == "id" else {"oin": taken.oin}))
    with pytest.raises(AgencyExists):
        book.add(validated_agency(fields, REGIONS), "op")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("oin", "12345"),
        ("id", "Not A Slug"),
        ("regions_served", ["GM9999"]),
        ("need_domains", ["gardening"]),
        ("languages", ["xx"]),
        ("client_display_name", "Exit programme for sex workers"),
        ("kind", "bank"),
    ],
)
def test_operator_input_is_validated_as_the_shipped_file_is(field, value):
    with pytest.raises(InvalidAgency):
        validated_agency(dict(NEW, **{field: value}), REGIONS)


def test_a_missing_field_is_refused():
    fields = dict(NEW)
    del fields["client_display_name"]
    with pytest.raises(InvalidAgency, match="client_display_name"):
        validated_agency(fields, REGIONS)


def test_an_update_names_the_version_it_saw(book):
    book.add(validated_agency(NEW, REGIONS), "op")
    changed = validated_agency(dict(NEW, accepting=False), REGIONS)
    with pytest.raises(StaleAgencyVersion):
        book.update(changed, expected_version=7, operator="op")
    change = book.update(changed, expected_version=1, operator="op")
    assert (change.change, change.entry.version, change.entry.agency.accepting) == (UPDATED, 2, False)
    assert book.directory().search(domain="shelter", region="GM0363", accepting_only=True)
    assert "shelter-zwolle" not in [
        a.agency_id for a in book.directory().search(domain="shelter", region="GM0363", accepting_only=True)
    ]


def test_an_update_cannot_take_another_agencys_oin(book):
    book.add(validated_agency(NEW, REGIONS), "op")
    other = next(iter(SHIPPED))
    with pytest.raises(AgencyExists):
        book.update(validated_agency(dict(NEW, oin=other.oin), REGIONS), expected_version=1, operator="op")


def test_a_suspended_agency_is_kept_but_never_matched_nor_a_receiver(book):
    book.add(validated_agency(NEW, REGIONS), "op")
    change = book.suspend("shelter-zwolle", "CONTRACT_ENDED", "op")
    assert (change.change, change.reason_code, change.entry.version) == (SUSPENDED, "CONTRACT_ENDED", 2)
    directory = book.directory()
    assert directory.get("shelter-zwolle").suspended
    assert "shelter-zwolle" not in [a.agency_id for a in directory.search(domain="shelter")]
    assert "suspended" in receiver_refusal(directory, "shelter-zwolle")
    assert receiver_refusal(directory, next(iter(SHIPPED)).agency_id) is None


def test_suspension_is_one_way(book):
    book.add(validated_agency(NEW, REGIONS), "op")
    book.suspend("shelter-zwolle", "CONTRACT_ENDED", "op")
    with pytest.raises(AgencyAlreadySuspended):
        book.suspend("shelter-zwolle", "CONTRACT_ENDED", "op")
    with pytest.raises(AgencyAlreadySuspended):
        book.update(validated_agency(NEW, REGIONS), expected_version=2, operator="op")


@pytest.mark.parametrize("reason", ["", "she told us in confidence", "contract ended"])
def test_a_suspension_reason_is_a_code_never_free_text(book, reason):
    with pytest.raises(InvalidAgency):
        book.suspend(next(iter(SHIPPED)).agency_id, reason, "op")


def test_suspending_an_unknown_agency_is_refused(book):
    with pytest.raises(NoSuchAgency):
        book.suspend("nobody-here", "CONTRACT_ENDED", "op")


def test_a_refused_change_changes_nothing(book):
    before = book.entries()
    with pytest.raises(AgencyExists):
        book.add(validated_agency(dict(NEW, oin=next(iter(SHIPPED)).oin), REGIONS), "op")
    assert book.entries() == before


def test_entries_round_trip_through_their_stored_fields(book):
    book.add(validated_agency(NEW, REGIONS), "op")
    entry = book.suspend("shelter-zwolle", "COMPROMISED_KEY", "op").entry
    assert entry_from_fields(entry_fields(entry), REGIONS) == entry
    for agency in SHIPPED:
        assert validated_agency(agency_fields(agency), REGIONS) == agency
