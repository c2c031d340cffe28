"""Regions for shelter (maatschappelijke opvang, MO) and supported housing (beschermd wonen, BW).

Each of the 43 regions is named by the CBS code of its central municipality (centrumgemeente).
``data/nl/mo-regions-2026.csv`` puts every current municipality in exactly one region, with the
confidence and public source of each membership (no official machine-readable list exists; see
``referencedata/README.md``). Columns:

    code,name,central_code,central_name,confidence,source,note

The loader refuses a file in which a current municipality is missing or listed twice, an abolished
or unknown code sits in a region, or a central municipality is not in its own region; the message
names the code and the line. A wrong membership silently makes the wrong region responsible, so a
file that is not complete and consistent is never used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from .errors import ReferenceDataError
from .municipalities import DATA, MUNICIPALITY_CODE, Municipality, MunicipalityRegister, read_csv

REGIONS_PATH = DATA / "mo-regions-2026.csv"
COLUMNS = ("code", "name", "central_code", "central_name", "confidence", "source", "note")
CONFIDENCE = ("confirmed", "best-available")


@dataclass(frozen=True)
class Membership:
    """One municipality's region, with how sure we are and why."""

    code: str
    name: str
    central_code: str
    central_name: str
    confidence: str  # "confirmed": a public source names it in this region; "best-available": inferred
    source: str  # URL(s) of the public source
    note: str = ""
    line: int = 0  # line in the file it came from (0 = not from a file)


class RegionData:
    """Validated membership: every current municipality in exactly one of the regions."""

    def __init__(self, rows: tuple[Membership, ...], register: MunicipalityRegister, source: str):
        self.rows = rows
        self.register = register
        self.source = source
        by_code = {row.code: row for row in rows}
        members: dict[str, list[Municipality]] = {}
        for row in rows:
            members.setdefault(row.central_code, []).append(register.current[row.code])
        self._by_code = MappingProxyType(by_code)
        self._members = MappingProxyType(
            {c: tuple(sorted(m, key=lambda x: x.code)) for c, m in sorted(members.items())}
        )

    @property
    def central_codes(self) -> tuple[str, ...]:
        return tuple(self._members)

    def members(self, central_code: str) -> tuple[Municipality, ...]:
        return self._members.get(central_code, ())

    def membership(self, code: str) -> Membership | None:
        return self._by_code.get(code)

    @property
    def regions(self) -> Mapping[str, tuple[Municipality, ...]]:
        return self._members


def load_region_data(path: str | Path = REGIONS_PATH, register: MunicipalityRegister | None = None) -> RegionData:
    """Read and validate a region data file against the municipality register."""
    from .municipalities import load_register

    path = Path(path)
    register = register if register is not None else load_register()
    rows = tuple(_membership(line, row) for line, row in read_csv(path, COLUMNS))
    check_region_data(rows, register, path.name)
    return RegionData(rows, register, path.name)


def _membership(line: int, row: dict[str, str]) -> Membership:
    return Membership(line=line, **row)


def check_region_data(rows: tuple[Membership, ...], register: MunicipalityRegister, source: str) -> None:
    """Raise ReferenceDataError ("file:line: ...") for the first problem found."""
    seen: dict[str, int] = {}
    for row in rows:
        where = f"{source}:{row.line}"
        for column in ("code", "central_code"):
            value = getattr(row, column)
            label = "" if column == "code" else f"{column} "
            if not MUNICIPALITY_CODE.match(value):
                raise ReferenceDataError(
                    where, f"{label}{value!r} is not a CBS municipality code (GM followed by four digits)"
                )
            gone = register.abolished.get(value)
            if gone is not None:
                now = ", ".join(f"{m.name} {m.code}" for m in gone.successors)
                raise ReferenceDataError(
                    where,
                    f"{label}{value} ({gone.name}) was abolished on {gone.since.isoformat()} (now {now}); "
                    "a region lists current municipalities only",
                )
            if value not in register:
                raise ReferenceDataError(where, f"{label}{value} is not a current municipality of {register.source}")
        if row.code in seen:
            raise ReferenceDataError(
                where,
                f"{row.code} is listed twice (first on line {seen[row.code]}); "
                "a municipality belongs to exactly one region",
            )
        seen[row.code] = row.line
        if row.confidence not in CONFIDENCE:
            raise ReferenceDataError(where, f"confidence {row.confidence!r} is not one of {', '.join(CONFIDENCE)}")
        if not row.source:
            raise ReferenceDataError(where, f"{row.code} has no source; every membership names where it comes from")
    by_code = {row.code: row for row in rows}
    for row in rows:
        own = by_code.get(row.central_code)
        if own is None or own.central_code != row.central_code:
            raise ReferenceDataError(
                f"{source}:{row.line}",
                f"central municipality {row.central_code} of {row.code} is not in its own region"
                + ("" if own is None else f" (line {own.line} puts it under {own.central_code})"),
            )
    for municipality in register:
        if municipality.code not in by_code:
            raise ReferenceDataError(
                source,
                f"{municipality.code} ({municipality.name}) is missing; every current municipality "
                f"of {register.source} must be in exactly one region",
            )


def write_region_data(path: str | Path, rows: tuple[Membership, ...]) -> None:
    """Write rows in the file format, sorted by municipality code (stable diffs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r.code):
        writer.writerow([row.code, row.name, row.central_code, row.central_name, row.confidence, row.source, row.note])
    Path(path).write_text(buffer.getvalue(), encoding="utf-8")


def renumbered(rows: tuple[Membership, ...]) -> tuple[Membership, ...]:
    """Rows sorted as written, with the line each will have in the file."""
    return tuple(replace(row, line=i + 2) for i, row in enumerate(sorted(rows, key=lambda r: r.code)))
