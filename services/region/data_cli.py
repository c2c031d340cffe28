"""`mesh region data import FILE.csv`: refresh the region data file from a CBS CSV download.

Reads a CBS "Gebieden in Nederland" CSV (semicolon-separated, quoted, as CBS publishes it), takes
each municipality's central municipality from the column named by `--central-column`, writes the
region data file the region policy names (or `--output`) and reports what changed. Nothing is
written when the file cannot be read as asked or when the result would not load (exit 1 or 2,
one line on standard error naming file and line).

Exit codes: 0 written (or, with --dry-run, only reported); 2 bad arguments or unreadable CBS
file; 1 the current data, the policy or the result cannot be used.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import IO, NoReturn

from referencedata.cbs_import import ImportRefused, import_centrals, read_cbs_centrals
from referencedata.errors import ReferenceDataError
from referencedata.regions import write_region_data
from services.region.domain.errors import PolicyError
from services.region.domain.policy import load_membership, read_policy_file, reference_path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config" / "regions.yaml"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="mesh region data import",
        add_help=False,
        description="Refresh region membership from a CBS 'Gebieden in Nederland' CSV.",
    )
    parser.add_argument("file", help="the CBS CSV download")
    parser.add_argument(
        "--central-column", required=True, help="column with the central municipality (CBS code or exact name)"
    )
    parser.add_argument("--code-column", default="Code_1", help="column with the municipality code (default Code_1)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="region policy naming the region data file")
    parser.add_argument("--output", default=None, help="file to write (default: the policy's membership file)")
    parser.add_argument(
        "--source",
        default=None,
        help="source recorded per changed row (default: 'CBS Gebieden in Nederland, FILE, imported DATE')",
    )
    parser.add_argument("--dry-run", action="store_true", help="report the changes, write nothing")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def run_data_command(argv: list[str], stdout: IO[str], stderr: IO[str], today: date | None = None) -> int:
    if not argv or argv[0] != "import":
        stderr.write("error: usage: mesh region data import FILE.csv --central-column NAME\n")
        return 2
    parser = _parser()
    if "-h" in argv or "--help" in argv:
        stdout.write(parser.format_help())
        return 0
    try:
        args = parser.parse_args(argv[1:])
    except _UsageError as problem:
        stderr.write(f"error: {problem}\n")
        return 2
    cbs_path = Path(args.file)
    try:
        text = cbs_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as problem:
        stderr.write(f"error: {cbs_path}: cannot read: {getattr(problem, 'strerror', None) or problem}\n")
        return 2
    try:
        data = read_policy_file(args.config)
        current = load_membership(data, Path(args.config), str(args.config))
        if current is None:
            raise PolicyError("membership", "this policy lists its municipalities inline; there is no region data file")
    except PolicyError as problem:
        stderr.write(f"error: {problem}\n")
        return 1
    output = Path(args.output) if args.output else reference_path(data["membership"], "membership", Path(args.config))
    imported = (today or date.today()).isoformat()  # noqa: DTZ011 - the operator's calendar day
    label = args.source or f"CBS Gebieden in Nederland, {cbs_path.name}, imported {imported}"
    try:
        centrals = read_cbs_centrals(text, cbs_path.name, args.code_column, args.central_column, current.register)
    except ImportRefused as problem:
        stderr.write(f"error: {problem}\n")
        return 2
    try:
        rows, report = import_centrals(current, centrals, output.name, label)
    except ReferenceDataError as problem:
        stderr.write(f"error: the result would not load, nothing written: {problem}\n")
        return 1
    for line in report.lines(current.register):
        stdout.write(line + "\n")
    if args.dry_run:
        stdout.write("dry run: nothing written\n")
        return 0
    write_region_data(output, rows)
    stdout.write(f"written to {output}\n")
    return 0
