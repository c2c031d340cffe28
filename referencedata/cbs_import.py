"""Refresh region membership from a CBS "Gebieden in Nederland" CSV download.

CBS publishes the table as semicolon-separated, quoted CSV with values padded with spaces
(``"GM0363    "``). Since its 2025 update it carries a column with each municipality's central
municipality. The column names differ per table and year, so the caller names them.

The import never guesses: a central municipality must be given as a current CBS code or as the
exact name of a current municipality; a municipality CBS lists that is not in the municipality
register is refused (update the register first); municipalities the file does not mention keep
their row. Rows that CBS confirms or changes get CBS as their source and confidence
``confirmed``; the result is checked like any region data file before it is written.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ReferenceDataError
from .municipalities import MUNICIPALITY_CODE, MunicipalityRegister
from .regions import Membership, RegionData, check_region_data, renumbered


class ImportRefused(ReferenceDataError):
    """The CBS file cannot be read as asked (missing column, unknown code or name)."""


@dataclass
class ImportReport:
    read: int = 0
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # code, old central, new central
    confirmed: list[str] = field(default_factory=list)  # best-available rows CBS agrees with
    unchanged: int = 0
    not_in_file: list[str] = field(default_factory=list)  # current municipalities CBS did not list
    new_regions: list[str] = field(default_factory=list)  # central codes that had no region before
    gone_regions: list[str] = field(default_factory=list)  # central codes that no longer have one

    def lines(self, register: MunicipalityRegister) -> list[str]:
        def name(code: str) -> str:
            found = register.get(code)
            return f"{code} {found.name}" if found else code

        out = [
            f"{self.read} municipalities read; {len(self.moved)} moved to another region, "
            f"{len(self.confirmed)} confirmed (were best-available), {self.unchanged} unchanged, "
            f"{len(self.not_in_file)} not in the file (kept as they were)"
        ]
        out += [f"moved: {name(code)}: region {name(old)} -> region {name(new)}" for code, old, new in self.moved]
        out += [f"confirmed: {name(code)}" for code in self.confirmed]
        out += [f"new region: {name(code)} (add it to the region policy)" for code in self.new_regions]
        out += [
            f"region without municipalities now: {name(code)} (remove it from the region policy)"
            for code in self.gone_regions
        ]
        return out


def read_cbs_centrals(
    text: str, source: str, code_column: str, central_column: str, register: MunicipalityRegister
) -> dict[str, tuple[int, str]]:
    """municipality code -> (line, central municipality code) from a CBS CSV text."""
    reader = csv.reader(text.splitlines(), delimiter=";", quotechar='"')
    header = [h.strip() for h in next(reader, [])]
    for column in (code_column, central_column):
        if column not in header:
            raise ImportRefused(f"{source}:1", f"no column {column!r}; columns: {', '.join(header)}")
    at_code, at_central = header.index(code_column), header.index(central_column)
    by_name = {m.name.casefold(): m.code for m in register}
    by_name.update({m.cbs_name.casefold(): m.code for m in register})
    found: dict[str, tuple[int, str]] = {}
    for values in reader:
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise ImportRefused(f"{source}:{line}", f"expected {len(header)} fields, found {len(values)}")
        code, central = values[at_code].strip(), values[at_central].strip()
        if not MUNICIPALITY_CODE.match(code):
            raise ImportRefused(f"{source}:{line}", f"{code_column} {code!r} is not a CBS municipality code")
        if code not in register:
            raise ImportRefused(
                f"{source}:{line}",
                f"{code} is not a current municipality of {register.source}; update the municipality list first",
            )
        if code in found:
            raise ImportRefused(f"{source}:{line}", f"{code} is listed twice (first on line {found[code][0]})")
        central_code = central if MUNICIPALITY_CODE.match(central) else by_name.get(central.casefold())
        if central_code is None or central_code not in register:
            raise ImportRefused(
                f"{source}:{line}",
                f"{central_column} {central!r} of {code} is not a current "
                "municipality (give its CBS code or exact name)",
            )
        found[code] = (line, central_code)
    return found


def import_centrals(
    current: RegionData, centrals: dict[str, tuple[int, str]], source: str, label: str
) -> tuple[tuple[Membership, ...], ImportReport]:
    """New region data rows from the current ones and the CBS centrals; checked before returning."""
    register = current.register
    report = ImportReport(read=len(centrals))
    rows: list[Membership] = []
    for municipality in register:
        old = current.membership(municipality.code)
        given = centrals.get(municipality.code)
        if given is None:
            if old is None:
                raise ImportRefused(
                    source,
                    f"{municipality.code} ({municipality.name}) is in neither the file nor the current region data",
                )
            report.not_in_file.append(municipality.code)
            rows.append(old)
            continue
        central = given[1]
        cbs: dict[str, Any] = dict(
            confidence="confirmed", source=label, central_code=central, central_name=register.current[central].name
        )
        if old is None or old.central_code != central:
            before = "" if old is None else f"moved from {old.central_code} by the CBS import; before: {old.source}"
            report.moved.append((municipality.code, old.central_code if old else "", central))
            rows.append(Membership(code=municipality.code, name=municipality.cbs_name, note=before, **cbs))
        elif old.confidence != "confirmed":
            report.confirmed.append(municipality.code)
            rows.append(replace(old, note=f"confirmed by the CBS import; before: {old.source}", **cbs))
        else:
            report.unchanged += 1
            rows.append(old)
    result = renumbered(tuple(rows))
    check_region_data(result, register, source)
    after = {row.central_code for row in result}
    report.new_regions = sorted(after - set(current.central_codes))
    report.gone_regions = sorted(set(current.central_codes) - after)
    return result, report
