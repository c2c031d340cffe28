"""Region configuration: the model, the YAML loader, and its validation.

The loader refuses anything it cannot evaluate with certainty, and names the place in the file
(`regions[2].services.exit_programme.requires[0].years`), because a silently misread policy would
send clients to the wrong region without anyone noticing.

"Unknown municipality" means: a code that is not listed in any region of this table. A code must
also look like a CBS municipality code: `GM` followed by four digits.

Membership comes either from the shared region data (`membership: referencedata:nl/mo-regions-2026.csv`,
checked against the CBS municipality list: every current municipality in exactly one region) or,
for small test tables, from `municipalities` listed under each region. Abolished municipalities
with one successor count as that successor (`successions`); split ones are refused (`splits`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from referencedata.errors import ReferenceDataError
from referencedata.municipalities import CHANGES_PATH, MUNICIPALITIES_PATH, Abolished, load_register
from referencedata.regions import REGIONS_PATH, RegionData, load_region_data

from .errors import PolicyError
from .rules import RULE_KINDS, FamilyRule, GrewUpRule, ResidenceRule, Rule, WorkRule

MUNICIPALITY_CODE = re.compile(r"GM[0-9]{4}\Z")

# Every service kind has client-facing names in the message catalogue; adding a kind means adding
# its names in all five languages too (tests check that they match).
SERVICE_KINDS: tuple[str, ...] = ("shelter", "exit_programme", "health", "income", "housing", "legal")


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str


@dataclass(frozen=True)
class ServiceRules:
    """`rules`: ties, any one of which binds the client to the region (weights rank regions).
    `requires`: local eligibility conditions, all of which must be met for the region's programme
    to accept the client (e.g. five years of registration for an exit programme)."""

    rules: tuple[Rule, ...]
    requires: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Region:
    code: str  # CBS code of the central municipality (centrumgemeente)
    name: str
    municipalities: tuple[Municipality, ...]
    services: Mapping[str, ServiceRules]
    # Built once: the resolver asks for the member set of every region it weighs, per decision.
    municipality_codes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "municipality_codes", frozenset(m.code for m in self.municipalities))


@dataclass(frozen=True)
class RegionPolicy:
    version: str
    ranking: Mapping[str, int]  # weight per rule kind; one national ranking so regions compare fairly
    regions: tuple[Region, ...]
    source: str = "<policy>"
    # Abolished municipality codes (CBS, since 2018) -> what became of them; empty for inline tables.
    abolished: Mapping[str, Abolished] = field(default_factory=dict)
    _by_code: Mapping[str, Region] = field(init=False, repr=False, compare=False)
    _by_municipality: Mapping[str, Region] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {r.code: r for r in self.regions})
        object.__setattr__(self, "_by_municipality", {m.code: r for r in self.regions for m in r.municipalities})

    @property
    def service_kinds(self) -> tuple[str, ...]:
        return tuple(self.regions[0].services) if self.regions else ()

    def region(self, code: str) -> Region | None:
        return self._by_code.get(code)

    def region_of(self, municipality: str) -> Region | None:
        return self._by_municipality.get(municipality)

    def municipality(self, code: str) -> Municipality | None:
        region = self._by_municipality.get(code)
        return None if region is None else next(m for m in region.municipalities if m.code == code)


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one, so a
    region listed twice under `services` would lose half its rules without a word."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise PolicyError(f"line {key_node.start_mark.line + 1}", f"key {key!r} appears twice")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_policy_file(path: str | Path) -> Any:
    """Parse a policy file as strict YAML (no duplicate keys). Raises PolicyError naming the place."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError("file", f"cannot read: {exc.strerror or exc}", source) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except PolicyError as exc:
        raise PolicyError(exc.where, exc.problem, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        raise PolicyError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}", source) from None


# `referencedata:<path>` names a file of the shared reference data (referencedata/data/<path>),
# wherever the policy file itself lives; any other path is relative to the policy file.
REFERENCE_PREFIX = "referencedata:"
_REFERENCE_FILES = {
    "membership": REGIONS_PATH,
    "municipalities": MUNICIPALITIES_PATH,
    "municipality_changes": CHANGES_PATH,
}


def load_policy(path: str | Path) -> RegionPolicy:
    """Read and validate a region configuration file. Raises PolicyError naming the place."""
    data = read_policy_file(path)
    return build_policy(data, str(path), membership=load_membership(data, Path(path), str(path)))


def reference_path(value: Any, key: str, policy_path: Path) -> Path:
    """The file a `membership`/`municipalities`/`municipality_changes` entry names."""
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(key, "must name a file, e.g. referencedata:nl/mo-regions-2026.csv")
    if "\x00" in value:  # no file system takes it; os.path would raise a bare ValueError
        raise PolicyError(key, "a file name cannot contain a NUL character")
    if value.startswith(REFERENCE_PREFIX):
        return REGIONS_PATH.parents[1] / value[len(REFERENCE_PREFIX) :]
    return (policy_path.parent / value).resolve()


def membership_path(policy_path: str | Path) -> Path | None:
    """The region data file a policy file takes its membership from (None: listed inline)."""
    data = read_policy_file(policy_path)
    if not isinstance(data, dict) or "membership" not in data:
        return None
    return reference_path(data["membership"], "membership", Path(policy_path))


def load_membership(data: Any, policy_path: Path, source: str) -> RegionData | None:
    """The shared region data a policy names under `membership`, validated (None if it names none)."""
    if not isinstance(data, dict) or "membership" not in data:
        return None
    files = {
        key: reference_path(data[key], key, policy_path) if key in data else default
        for key, default in _REFERENCE_FILES.items()
    }
    try:
        register = load_register(files["municipalities"], files["municipality_changes"])
        return load_region_data(files["membership"], register)
    except ReferenceDataError as exc:
        raise PolicyError("membership", str(exc), source) from None
    except OSError as exc:  # a name the file system refuses (too long, a directory, no access)
        raise PolicyError("membership", f"cannot read the file it names: {exc.strerror or exc}", source) from None


def build_policy(data: Any, source: str = "<policy>", membership: RegionData | None = None) -> RegionPolicy:
    """Validate already-parsed configuration data (as from YAML) into a RegionPolicy.
    A policy with a `membership` key takes its region data from `membership` if given, else reads
    the file it names (a relative path is taken relative to `source`)."""
    try:
        if membership is None:
            membership = load_membership(data, Path(source), source)
        return _Builder(membership).policy(data, source)
    except PolicyError as exc:
        raise PolicyError(exc.where, exc.problem, source) from None


class _Builder:
    def __init__(self, membership: RegionData | None) -> None:
        self.membership = membership

    def policy(self, data: Any, source: str) -> RegionPolicy:
        top = _mapping(
            data,
            "top level",
            {"version", "ranking", "defaults", "regions", *_REFERENCE_FILES},
            required={"version", "ranking", "defaults", "regions"},
        )
        if "membership" not in top:
            for key in ("municipalities", "municipality_changes"):
                if key in top:
                    raise PolicyError(key, "is only used together with `membership`")
        elif self.membership is None:
            raise PolicyError("membership", "the region data is not loaded; read the policy with load_policy")
        version = top["version"]
        if isinstance(version, bool) or not isinstance(version, (str, int, float)) or str(version).strip() == "":
            raise PolicyError("version", 'must be a non-empty text or number, e.g. "2026.1"')
        ranking = self.ranking(top["ranking"])
        defaults = self.defaults(top["defaults"])
        raw_regions = top["regions"]
        if not isinstance(raw_regions, list) or not raw_regions:
            raise PolicyError("regions", "must be a non-empty list of regions")
        owner: dict[str, str] = {}  # municipality code -> place where it was first listed
        shared = self.membership if "membership" in top else None
        regions = tuple(self.region(raw, f"regions[{i}]", defaults, owner, shared) for i, raw in enumerate(raw_regions))
        abolished: Mapping[str, Abolished] = {}
        if shared is not None:
            listed = {r.code for r in regions}
            for central in shared.central_codes:
                if central not in listed:
                    name = shared.register.current[central].name
                    raise PolicyError(
                        "regions",
                        f"the region of central municipality {central} ({name}) in "
                        f"{shared.source} has no entry; every region needs its name and rules",
                    )
            abolished = shared.register.abolished
        return RegionPolicy(version=str(version), ranking=ranking, regions=regions, source=source, abolished=abolished)

    def ranking(self, data: Any) -> dict[str, int]:
        ranking = _mapping(data, "ranking", set(RULE_KINDS), required=set(RULE_KINDS))
        return {kind: _positive_int(ranking[kind], f"ranking.{kind}") for kind in RULE_KINDS}

    def defaults(self, data: Any) -> dict[str, ServiceRules]:
        defaults = _mapping(data, "defaults", {"services"}, required={"services"})
        services = defaults["services"]
        if not isinstance(services, dict) or not services:
            raise PolicyError("defaults.services", "must map each service kind to its rules")
        result: dict[str, ServiceRules] = {}
        for kind, raw in services.items():
            where = f"defaults.services.{kind}"
            if kind not in SERVICE_KINDS:
                raise PolicyError(where, f"unknown service kind; known kinds: {', '.join(SERVICE_KINDS)}")
            entry = _mapping(raw, where, {"rules", "requires"}, required={"rules"})
            result[kind] = ServiceRules(
                rules=self.rules(entry["rules"], f"{where}.rules", weighted=True),
                requires=self.rules(entry.get("requires", []), f"{where}.requires", weighted=False),
            )
        return result

    def region(
        self, data: Any, where: str, defaults: dict[str, ServiceRules], owner: dict[str, str], shared: RegionData | None
    ) -> Region:
        if shared is not None:
            entry = _mapping(data, where, {"code", "name", "services"}, required={"code", "name"})
            code = _code(entry["code"], f"{where}.code")
            if code in owner:
                raise PolicyError(f"{where}.code", f"{code} is already listed at {owner[code]}; one entry per region")
            owner[code] = where
            members = shared.members(code)
            if not members:
                raise PolicyError(f"{where}.code", f"{code} is not a central municipality in {shared.source}")
            municipalities = tuple(Municipality(m.code, m.name) for m in members)
            return Region(
                code=code,
                name=_text(entry["name"], f"{where}.name"),
                municipalities=municipalities,
                services=self.services(entry, where, defaults),
            )
        entry = _mapping(
            data, where, {"code", "name", "municipalities", "services"}, required={"code", "name", "municipalities"}
        )
        name = _text(entry["name"], f"{where}.name")
        raw_munis = entry["municipalities"]
        if not isinstance(raw_munis, list) or not raw_munis:
            raise PolicyError(f"{where}.municipalities", "must be a non-empty list of {code, name}")
        listed: list[Municipality] = []
        for j, raw in enumerate(raw_munis):
            m_where = f"{where}.municipalities[{j}]"
            m = _mapping(raw, m_where, {"code", "name"}, required={"code", "name"})
            code = _code(m["code"], f"{m_where}.code")
            if code in owner:
                raise PolicyError(
                    f"{m_where}.code",
                    f"{code} is already listed at {owner[code]}; a municipality belongs to exactly one region",
                )
            owner[code] = m_where
            listed.append(Municipality(code, _text(m["name"], f"{m_where}.name")))
        code = _code(entry["code"], f"{where}.code")
        if code not in {m.code for m in listed}:
            raise PolicyError(
                f"{where}.code",
                f"unknown municipality {code}: a region is named by its central municipality, "
                "which must be one of its own municipalities",
            )
        return Region(
            code=code, name=name, municipalities=tuple(listed), services=self.services(entry, where, defaults)
        )

    def services(self, entry: dict[str, Any], where: str, defaults: dict[str, ServiceRules]) -> dict[str, ServiceRules]:
        services = dict(defaults)
        raw_services = entry.get("services", {}) or {}
        if not isinstance(raw_services, dict):
            raise PolicyError(f"{where}.services", "must map service kinds to rule overrides")
        for kind, raw in raw_services.items():
            s_where = f"{where}.services.{kind}"
            if kind not in defaults:
                raise PolicyError(
                    s_where,
                    f"unknown service kind; services in defaults: {', '.join(defaults)}",
                )
            override = _mapping(raw, s_where, {"rules", "requires"})
            base = defaults[kind]
            services[kind] = ServiceRules(
                rules=(
                    self.rules(override["rules"], f"{s_where}.rules", weighted=True)
                    if "rules" in override
                    else base.rules
                ),
                requires=(
                    self.rules(override["requires"], f"{s_where}.requires", weighted=False)
                    if "requires" in override
                    else base.requires
                ),
            )
        return services

    def rules(self, data: Any, where: str, weighted: bool) -> tuple[Rule, ...]:
        if not isinstance(data, list):
            raise PolicyError(where, "must be a list of rules")
        if weighted and not data:
            raise PolicyError(where, "needs at least one rule, otherwise no client can ever be bound")
        return tuple(self.rule(raw, f"{where}[{i}]") for i, raw in enumerate(data))

    def rule(self, data: Any, where: str) -> Rule:
        if not isinstance(data, dict):
            raise PolicyError(where, "must be a mapping with a `kind`")
        kind = data.get("kind")
        if kind is None:
            raise PolicyError(f"{where}.kind", "is required")
        if kind not in RULE_KINDS:
            raise PolicyError(f"{where}.kind", f"unknown rule kind {kind!r}; known kinds: {', '.join(RULE_KINDS)}")
        if kind == "residence":
            params = _mapping(data, where, {"kind", "years", "within_years", "registered_only"}, required={"years"})
            years = _positive_int(params["years"], f"{where}.years")
            within = self.within(params, where, minimum_days=years * 365)
            registered_only = params.get("registered_only", False)
            if not isinstance(registered_only, bool):
                raise PolicyError(f"{where}.registered_only", "must be true or false")
            return ResidenceRule(years=years, within_years=within, registered_only=registered_only)
        if kind == "work":
            params = _mapping(data, where, {"kind", "months", "within_years"}, required={"months"})
            months = _positive_int(params["months"], f"{where}.months")
            return WorkRule(months=months, within_years=self.within(params, where, minimum_days=months * 30))
        _mapping(data, where, {"kind"})
        return GrewUpRule() if kind == "grew_up" else FamilyRule()

    @staticmethod
    def within(params: dict[str, Any], where: str, minimum_days: int) -> int | None:
        if params.get("within_years") is None:
            return None
        within = _positive_int(params["within_years"], f"{where}.within_years")
        if within * 365 < minimum_days:
            raise PolicyError(
                f"{where}.within_years", "is shorter than the period it must contain; no one could meet this rule"
            )
        return within


def _mapping(
    data: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PolicyError(where, "must be a mapping")
    for key in data:
        if key not in allowed:
            raise PolicyError(
                f"{where}.{key}" if where != "top level" else str(key),
                f"unknown key; allowed here: {', '.join(sorted(allowed))}",
            )
    for key in sorted(required):
        if key not in data:
            raise PolicyError(f"{where}.{key}" if where != "top level" else key, "is required")
    return data


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(where, f"must be a whole number of 1 or more, not {value!r}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(where, "must be a non-empty text")
    return value


def _code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not MUNICIPALITY_CODE.match(value):
        raise PolicyError(where, f"{value!r} is not a CBS municipality code (GM followed by four digits)")
    return value
