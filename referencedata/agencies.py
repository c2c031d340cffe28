"""The agency directory: which organisations take part in the mesh, where, and for what.

Shared reference data: the referral service matches and authenticates agencies with it, the
region service learns from it which regions an agency serves. Loaded from YAML
(``referencedata/data/agencies.yaml``) and validated strictly, because a wrong code here
silently sends clients to the wrong place. Every error names the place in the
file (``file:line path``), e.g. ``agencies.yaml:57 agencies[4].oin: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .errors import DirectoryError, InvalidQuery
from .languages import ISO_639_1
from .need_domains import NeedDomain

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "agencies.yaml"

# The mesh's own actor id (never a valid agency id: agency ids are validated against it).
SYSTEM_ACTOR = "system"
# Agency ids are short lowercase slugs, e.g. "exit-amsterdam".
AGENCY_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
OIN_RE = re.compile(r"^\d{20}$")  # Dutch government organisation number (Logius OIN)
REGION_RE = re.compile(r"^GM\d{4}$")  # CBS municipality code of a central municipality
# Words that must never stand in a name a client's message shows: a text on a lock screen or a
# shared phone must not tell others that the client is a sex worker or leaving sex work.
OUTING_WORDS_RE = re.compile(
    r"sex|seks|prostitu|escort|erot|red light|rosse buurt|raamwerk|uitstap|exit", re.IGNORECASE
)


def is_agency_id(value: object) -> bool:
    return isinstance(value, str) and bool(AGENCY_ID_RE.match(value)) and value != SYSTEM_ACTOR


class AgencyKind(str, Enum):
    SHELTER = "shelter"
    CARE = "care"
    MUNICIPALITY = "municipality"
    CENTRAL_MUNICIPALITY = "central_municipality"
    EXIT_PROGRAMME = "exit_programme"
    PUBLIC_HEALTH = "public_health"
    ADVOCACY = "advocacy"
    LEGAL_AID = "legal_aid"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Agency:
    agency_id: str
    name: str  # the full name, for agencies and coordinators
    kind: AgencyKind
    oin: str
    regions_served: tuple[str, ...]
    need_domains: tuple[NeedDomain, ...]
    languages: tuple[str, ...]
    accepting: bool  # capacity flag: False = not taking new referrals right now
    # The neutral name every client-facing text uses ("Voices Together", not "Voices Together,
    # sex worker peer support and advocacy"); required, never derived from `name`.
    client_display_name: str
    # Suspended by an operator (`mesh agency suspend`): found by id, never matched, never a receiver.
    suspended: bool = False


class Directory:
    """Read-only set of agencies with lookups by id and OIN; ``search`` is sorted by agency id."""

    def __init__(self, agencies: Iterable[Agency], regions: Mapping[str, str] | None = None):
        by_id: dict[str, Agency] = {}
        by_oin: dict[str, Agency] = {}
        for agency in agencies:
            if agency.agency_id in by_id:
                raise DirectoryError(agency.agency_id, "duplicate agency id")
            if agency.oin in by_oin:
                other = by_oin[agency.oin].agency_id
                raise DirectoryError(agency.agency_id, f"OIN {agency.oin} is also used by {other}")
            by_id[agency.agency_id] = agency
            by_oin[agency.oin] = agency
        self._by_id = dict(sorted(by_id.items()))
        self._by_oin = by_oin
        served = {r for a in self._by_id.values() for r in a.regions_served}
        names = dict(regions) if regions is not None else {r: r for r in sorted(served)}
        self._regions = MappingProxyType(names)

    @property
    def regions(self) -> Mapping[str, str]:
        """CBS code -> region name."""
        return self._regions

    def get(self, agency_id: str) -> Agency | None:
        return self._by_id.get(agency_id)

    def by_oin(self, oin: str) -> Agency | None:
        """The agency behind a certificate (PKIoverheid puts the OIN in the subject serial)."""
        return self._by_oin.get(oin)

    def search(
        self,
        domain: NeedDomain | str | None = None,
        region: str | None = None,
        language: str | None = None,
        accepting_only: bool = False,
        kind: AgencyKind | str | None = None,
    ) -> list[Agency]:
        """Agencies matching every given filter, sorted by agency id (deterministic)."""
        if domain is not None:
            domain = _member(NeedDomain, domain, "domain")
        if kind is not None:
            kind = _member(AgencyKind, kind, "kind")
        if region is not None and not (isinstance(region, str) and REGION_RE.match(region)):
            raise InvalidQuery("region", "is not a CBS code like GM0363")
        if language is not None and language not in ISO_639_1:
            raise InvalidQuery("language", "is not an ISO 639-1 code")
        return [
            a
            for a in self._by_id.values()
            if (domain is None or domain in a.need_domains)
            and (region is None or region in a.regions_served)
            and (language is None or language in a.languages)
            and (kind is None or a.kind is kind)
            and (a.accepting or not accepting_only)
            and not a.suspended
        ]

    def __iter__(self) -> Iterator[Agency]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, agency_id: object) -> bool:
        return agency_id in self._by_id


def _member(enum: type[Enum], value: object, field: str) -> Any:
    """An enum member from itself or its code; the refused value is not repeated (it may be
    anything a caller typed, and errors reach logs)."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidQuery(field, f"unknown code; expected one of: {allowed}") from None


# ----------------------------------------------------------------------------- loading

_FIELDS = {
    "id",
    "name",
    "client_display_name",
    "kind",
    "oin",
    "regions_served",
    "need_domains",
    "languages",
    "accepting",
}


def load_directory(path: str | Path = DEFAULT_PATH) -> Directory:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DirectoryError(str(path), f"cannot read the file ({exc.strerror})") from None
    return parse_directory(text, source=path.name)


def agency_from_fields(item: Mapping[str, Any], regions: Mapping[str, str], source: str = "agency") -> Agency:
    """One agency from its fields (the keys of the YAML file), validated as the file is: used
    when an operator adds or changes an agency without a redeploy."""
    return _Parser(source, {}).agency((), dict(item), regions)


def agency_fields(agency: Agency) -> dict[str, Any]:
    """The fields `agency_from_fields` reads, from an agency (for storage and round trips)."""
    return {
        "id": agency.agency_id,
        "name": agency.name,
        "client_display_name": agency.client_display_name,
        "kind": agency.kind.value,
        "oin": agency.oin,
        "regions_served": list(agency.regions_served),
        "need_domains": [d.value for d in agency.need_domains],
        "languages": list(agency.languages),
        "accepting": agency.accepting,
    }


def parse_directory(text: str, source: str = "<directory>") -> Directory:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise DirectoryError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    lines: dict[tuple[Any, ...], int] = {}
    _index_lines(root, (), lines, source)
    return _Parser(source, lines).directory(data)


def _index_lines(node: Any, path: tuple[Any, ...], out: dict, source: str) -> None:
    """Map each path in the document to its line; refuse duplicate keys (YAML keeps the last)."""
    if node is None:
        return
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if key.value in seen:
                raise DirectoryError(
                    f"{source}:{key.start_mark.line + 1} {_fmt(path + (key.value,))}",
                    "duplicate key",
                )
            seen.add(key.value)
            _index_lines(value, path + (key.value,), out, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), out, source)


def _fmt(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


class _Parser:
    def __init__(self, source: str, lines: Mapping[tuple[Any, ...], int]):
        self.source = source
        self.lines = lines

    def fail(self, path: tuple[Any, ...], message: str) -> DirectoryError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f"{self.source}:{line}" if line else self.source
        return DirectoryError(f"{where} {_fmt(path)}", message)

    def directory(self, data: Any) -> Directory:
        if not isinstance(data, dict):
            raise self.fail((), "expected a mapping with 'regions' and 'agencies'")
        unknown = set(data) - {"regions", "agencies"}
        if unknown:
            raise self.fail((sorted(unknown, key=str)[0],), "unknown top-level key")
        regions = self.regions(data.get("regions"))
        items = data.get("agencies")
        if not isinstance(items, list) or not items:
            raise self.fail(("agencies",), "expected a non-empty list of agencies")
        agencies: list[Agency] = []
        ids: dict[str, int] = {}
        oins: dict[str, int] = {}
        for i, item in enumerate(items):
            agency = self.agency(("agencies", i), item, regions)
            if agency.agency_id in ids:
                raise self.fail(
                    ("agencies", i, "id"),
                    f"duplicate agency id {agency.agency_id!r} (first at agencies[{ids[agency.agency_id]}])",
                )
            if agency.oin in oins:
                raise self.fail(
                    ("agencies", i, "oin"),
                    f"duplicate OIN {agency.oin} (first at agencies[{oins[agency.oin]}])",
                )
            ids[agency.agency_id] = i
            oins[agency.oin] = i
            agencies.append(agency)
        return Directory(agencies, regions)

    def regions(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not value:
            raise self.fail(("regions",), "expected a mapping of CBS code to region name")
        for code, name in value.items():
            if not isinstance(code, str) or not REGION_RE.match(code):
                raise self.fail(("regions", code), f"{code!r} is not a CBS code like GM0363")
            if not isinstance(name, str) or not name.strip():
                raise self.fail(("regions", code), "region name is empty")
        return dict(value)

    def agency(self, path: tuple[Any, ...], item: Any, regions: Mapping[str, str]) -> Agency:
        if not isinstance(item, dict):
            raise self.fail(path, "expected a mapping describing one agency")
        for key in item:
            if key not in _FIELDS:
                raise self.fail(path + (key,), f"unknown field; expected one of {sorted(_FIELDS)}")
        for key in sorted(_FIELDS):
            if key not in item:
                hint = " (the neutral name client messages show)" if key == "client_display_name" else ""
                raise self.fail(path, f"missing field {key!r}{hint}")

        agency_id = item["id"]
        if not is_agency_id(agency_id):
            raise self.fail(path + ("id",), f"{agency_id!r} is not a lowercase slug like exit-amsterdam")
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            raise self.fail(path + ("name",), "name is empty")
        client_name = self.client_display_name(path + ("client_display_name",), item["client_display_name"])
        try:
            kind = AgencyKind(item["kind"])
        except ValueError:
            raise self.fail(
                path + ("kind",),
                f"unknown kind {item['kind']!r}; expected one of {[k.value for k in AgencyKind]}",
            ) from None
        oin = item["oin"]
        if isinstance(oin, int):
            raise self.fail(path + ("oin",), "write the OIN as a quoted string (leading zeros)")
        if not isinstance(oin, str) or not OIN_RE.match(oin):
            raise self.fail(path + ("oin",), f"{oin!r} is not a 20-digit OIN")
        served = self.codes(path + ("regions_served",), item["regions_served"])
        for j, code in enumerate(served):
            if not REGION_RE.match(code):
                raise self.fail(path + ("regions_served", j), f"{code!r} is not a CBS code like GM0363")
            if code not in regions:
                raise self.fail(path + ("regions_served", j), f"region {code} is not declared under 'regions'")
        domains = self.codes(path + ("need_domains",), item["need_domains"])
        for j, code in enumerate(domains):
            if code not in NeedDomain._value2member_map_:
                raise self.fail(
                    path + ("need_domains", j),
                    f"unknown need domain {code!r}; expected one of {[d.value for d in NeedDomain]}",
                )
        languages = self.codes(path + ("languages",), item["languages"])
        for j, code in enumerate(languages):
            if code not in ISO_639_1:
                raise self.fail(path + ("languages", j), f"{code!r} is not an ISO 639-1 code")
        accepting = item["accepting"]
        if not isinstance(accepting, bool):
            raise self.fail(path + ("accepting",), "must be true or false")
        return Agency(
            agency_id=agency_id,
            name=name.strip(),
            kind=kind,
            oin=oin,
            regions_served=served,
            need_domains=tuple(NeedDomain(d) for d in domains),
            languages=languages,
            accepting=accepting,
            client_display_name=client_name,
        )

    def client_display_name(self, path: tuple[Any, ...], value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "the neutral name shown to clients is empty")
        found = OUTING_WORDS_RE.search(value)
        if found:
            raise self.fail(
                path,
                f"contains {found.group(0)!r}: a client's message must not reveal what the client"
                " is helped with; use a neutral name (e.g. the organisation's name without its"
                " description)",
            )
        return value.strip()

    def codes(self, path: tuple[Any, ...], value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, "expected a non-empty list of codes")
        for j, code in enumerate(value):
            if not isinstance(code, str):
                raise self.fail(path + (j,), f"{code!r} is not a code")
            if code in value[:j]:
                raise self.fail(path + (j,), f"duplicate code {code!r}")
        return tuple(value)
