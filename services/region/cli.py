"""`mesh region resolve FILE.json`: resolve one request from a JSON file (or `-` for stdin).

Exit codes: 0 decision printed; 2 invalid input (one line on stderr naming the field);
1 the region configuration cannot be used (one line naming the place in the file).
The `mesh` console script passes the arguments after `resolve` to `run_resolve`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import IO, NoReturn

from services.region.domain import (
    InvalidInput,
    PolicyError,
    decision_to_dict,
    load_policy,
    parse_request,
    resolve,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config" / "regions.yaml"

EXIT_OK = 0
EXIT_POLICY = 1
EXIT_INPUT = 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of calling sys.exit, so the caller's streams are used."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="mesh region resolve",
        description="Decide which region is responsible for a client, and whether to propose a warm handover.",
        add_help=False,
    )
    parser.add_argument("file", help="request as JSON; - reads standard input")
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="region configuration (default: the shipped regions.yaml)"
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    return parser


def run_resolve(argv: list[str], stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> int:
    parser = _parser()
    if "-h" in argv or "--help" in argv:
        stdout.write(parser.format_help())
        return EXIT_OK
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        stderr.write(f"error: {_one_line(str(exc))}\n")
        return EXIT_INPUT

    try:
        text = stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        stderr.write(f"error: {args.file}: cannot read: {_one_line(getattr(exc, 'strerror', None) or str(exc))}\n")
        return EXIT_INPUT
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        stderr.write(f"error: input: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})\n")
        return EXIT_INPUT

    try:
        policy = load_policy(args.config)
    except PolicyError as exc:
        stderr.write(f"error: {_one_line(str(exc))}\n")
        return EXIT_POLICY

    try:
        decision = resolve(parse_request(data), policy)
    except InvalidInput as exc:
        stderr.write(f"error: {_one_line(str(exc))}\n")
        return EXIT_INPUT

    stdout.write(json.dumps(decision_to_dict(decision), indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def _one_line(text: str) -> str:
    return " ".join(text.split())
