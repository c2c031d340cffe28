"""Dutch municipalities: the current list with CBS codes, and what became of abolished ones.

Two files, both from CBS (see ``referencedata/README.md`` for source, date and licence):

- ``data/nl/municipalities-2026.csv``: ``code,name`` of every municipality valid on 1 January
  2026, with CBS's names ("Groningen (gemeente)", "Bergen (NH.)").
- ``data/nl/municipality-changes-2018-2026.csv``: every merger since 2018, one row per abolished
  code and successor (``kind`` is ``split`` when one municipality was divided over several).

An abolished code with one successor counts as that successor (following later mergers too): a
residence in Weesp until 2022 is a residence in what is Amsterdam now. A code that was split has
no single successor, so it is refused with an error that asks for the current municipality;
guessing would silently send the client to a region chosen by us, not by the facts.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType

from .errors import ReferenceDataError

DATA = Path(__file__).resolve().parent / "data" / "nl"
MUNICIPALITIES_PATH = DATA / "municipalities-2026.csv"
CHANGES_PATH = DATA / "municipality-changes-2018-2026.csv"

MUNICIPALITY_CODE = re.compile(r"GM[0-9]{4}\Z")
# CBS adds "(gemeente)" where a municipality shares its name with a province, and a province
# abbreviation where two municipalities (or a well-known place elsewhere) share a name.
_CBS_SUFFIX = re.compile(r"\s*\((gemeente|[A-Z]{1,2}\.)\)\Z")
_CHANGE_KINDS = frozenset({"merged", "added", "new", "split"})


class UnknownMunicipality(ReferenceDataError):
    """A code that is neither a current municipality nor an abolished one."""

    code = "UNKNOWN_MUNICIPALITY"


class SplitMunicipality(ReferenceDataError):
    """An abolished municipality that was divided over several successors."""

    code = "SPLIT_MUNICIPALITY"


@dataclass(frozen=True)
class Municipality:
    code: str  # CBS code, GM + four digits
    cbs_name: str  # as CBS publishes it, e.g. "Groningen (gemeente)"
    name: str  # for people: "Groningen"; "Bergen (NH.)" and "Bergen (L.)" stay distinct


@dataclass(frozen=True)
class Abolished:
    """An abolished municipality; ``successors`` are current municipalities (one unless split)."""

    code: str
    name: str
    since: date
    successors: tuple[Municipality, ...]

    @property
    def split(self) -> bool:
        return len(self.successors) > 1


def display_name(cbs_name: str, all_cbs_names: list[str]) -> str:
    """CBS's name without its suffix, unless another municipality would then carry the same name."""
    bare = _CBS_SUFFIX.sub("", cbs_name)
    if bare == cbs_name:
        return cbs_name
    clashes = sum(1 for other in all_cbs_names if _CBS_SUFFIX.sub("", other) == bare)
    return bare if clashes == 1 else cbs_name


class MunicipalityRegister:
    """The current municipalities and the abolished codes that lead to them."""

    def __init__(
        self, current: Mapping[str, Municipality], abolished: Mapping[str, Abolished], source: str = "<municipalities>"
    ):
        self._current = MappingProxyType(dict(sorted(current.items())))
        self._abolished = MappingProxyType(dict(sorted(abolished.items())))
        self.source = source

    @property
    def current(self) -> Mapping[str, Municipality]:
        return self._current

    @property
    def abolished(self) -> Mapping[str, Abolished]:
        return self._abolished

    def __iter__(self) -> Iterator[Municipality]:
        return iter(self._current.values())

    def __len__(self) -> int:
        return len(self._current)

    def __contains__(self, code: object) -> bool:
        return code in self._current

    def get(self, code: str) -> Municipality | None:
        return self._current.get(code)

    def current_for(self, code: str) -> Municipality:
        """The current municipality a code stands for (itself, or the successor of an abolished one).

        Raises SplitMunicipality for a divided municipality and UnknownMunicipality otherwise."""
        found = self._current.get(code)
        if found is not None:
            return found
        gone = self._abolished.get(code)
        if gone is None:
            raise UnknownMunicipality(code, f"is not a municipality (not in {self.source})")
        if gone.split:
            names = ", ".join(m.name for m in gone.successors)
            raise SplitMunicipality(
                code,
                f"{gone.name} was divided between {names} on {gone.since.isoformat()}; "
                "give the current municipality instead",
            )
        return gone.successors[0]


# --------------------------------------------------------------------------- loading


def load_register(
    municipalities: str | Path = MUNICIPALITIES_PATH, changes: str | Path = CHANGES_PATH
) -> MunicipalityRegister:
    """Read and check both files. Raises ReferenceDataError naming the file and line."""
    current = _read_current(Path(municipalities))
    abolished = _read_changes(Path(changes), current)
    return MunicipalityRegister(current, abolished, source=Path(municipalities).name)


def read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows as (line number, row) of a UTF-8 CSV whose header is exactly ``columns``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ReferenceDataError(str(path), f"cannot read the file ({exc.strerror or exc})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != columns:
        raise ReferenceDataError(f"{path.name}:1", f"expected the columns {','.join(columns)}, found {header}")
    rows: list[tuple[int, dict[str, str]]] = []
    for values in reader:
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(columns):
            raise ReferenceDataError(f"{path.name}:{line}", f"expected {len(columns)} fields, found {len(values)}")
        rows.append((line, {c: v.strip() for c, v in zip(columns, values, strict=False)}))
    return rows


def _read_current(path: Path) -> dict[str, Municipality]:
    rows = read_csv(path, ("code", "name"))
    names = [row["name"] for _, row in rows]
    current: dict[str, Municipality] = {}
    lines: dict[str, int] = {}
    for line, row in rows:
        code, name = row["code"], row["name"]
        where = f"{path.name}:{line}"
        if not MUNICIPALITY_CODE.match(code):
            raise ReferenceDataError(where, f"{code!r} is not a CBS municipality code (GM followed by four digits)")
        if not name:
            raise ReferenceDataError(where, f"{code} has no name")
        if code in current:
            raise ReferenceDataError(where, f"{code} is listed twice (first on line {lines[code]})")
        current[code] = Municipality(code, name, display_name(name, names))
        lines[code] = line
    if not current:
        raise ReferenceDataError(path.name, "lists no municipalities")
    return current


def _read_changes(path: Path, current: Mapping[str, Municipality]) -> dict[str, Abolished]:
    rows = read_csv(
        path, ("effective_date", "abolished_code", "abolished_name", "successor_code", "successor_name", "kind", "note")
    )
    raw: dict[str, tuple[str, date, list[str]]] = {}  # abolished code -> name, date, successor codes
    for line, row in rows:
        where = f"{path.name}:{line}"
        for column in ("abolished_code", "successor_code"):
            if not MUNICIPALITY_CODE.match(row[column]):
                raise ReferenceDataError(where, f"{column} {row[column]!r} is not a CBS municipality code")
        if row["kind"] not in _CHANGE_KINDS:
            raise ReferenceDataError(where, f"kind {row['kind']!r} is not one of {', '.join(sorted(_CHANGE_KINDS))}")
        try:
            since = date.fromisoformat(row["effective_date"])
        except ValueError:
            raise ReferenceDataError(
                where, f"effective_date {row['effective_date']!r} is not a date (yyyy-mm-dd)"
            ) from None
        code = row["abolished_code"]
        if code in current:
            raise ReferenceDataError(where, f"{code} is abolished here but is also a current municipality")
        name, _, successors = raw.setdefault(code, (row["abolished_name"], since, []))
        if row["successor_code"] not in successors:
            successors.append(row["successor_code"])

    def follow(code: str, seen: tuple[str, ...]) -> tuple[str, ...]:
        if code in current:
            return (code,)
        if code in seen or code not in raw:
            raise ReferenceDataError(
                path.name, f"successor {code} of {seen[-1]} is neither current nor abolished later"
            )
        return tuple(dict.fromkeys(c for s in raw[code][2] for c in follow(s, seen + (code,))))

    abolished: dict[str, Abolished] = {}
    for code, (name, since, _) in raw.items():
        current_successors = follow(code, ())
        abolished[code] = Abolished(code, name, since, tuple(current[c] for c in sorted(current_successors)))
    return abolished
