"""`mesh coordinator add|disable|reset-password|list`: dashboard accounts an operator manages.

Accounts live in the notify store (MESH_NOTIFY_DATABASE_URL, or the state folder's notify.db):
a username, a scope (one region's CBS code, or NATIONAL) and a scrypt hash. A new or reset
password is random and printed once, or read from standard input (--password-stdin) for
scripts and password managers. Disabling an account or resetting its password ends its
sessions at once. Every change is one access-log row (actor `operator`, channel `cli`).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TextIO

from meshkernel.config import MeshSettings
from services.notify.adapters import passwords
from services.notify.adapters.directory import load_names
from services.notify.adapters.store import NotifyStore
from services.notify.domain.alerts import NATIONAL
from services.notify.paths import NotifyPaths

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")
MIN_PASSWORD_LENGTH = 12
COMMANDS = ("add", "disable", "enable", "reset-password", "list")


class AccountError(Exception):
    """A change the operator asked for that cannot be made; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="coordinator_command", required=True)
    add = commands.add_parser("add", help="create a coordinator account (prints its password once)")
    add.add_argument("username", help="lower case letters, digits, . _ -")
    scope = add.add_mutually_exclusive_group(required=True)
    scope.add_argument("--region", help="CBS code of the region they coordinate, e.g. GM0518")
    scope.add_argument("--national", action="store_true", help="the national coordinator (every region)")
    add.add_argument("--name", default="", help="shown on the dashboard (a role, e.g. 'Coordinator Haaglanden')")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for name, text in (
        ("disable", "stop an account from signing in; ends its sessions"),
        ("enable", "let a disabled account sign in again"),
        ("reset-password", "set a new password (prints it once); ends its sessions"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("username")
        if name == "reset-password":
            command.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    commands.add_parser("list", help="every account: username, scope, disabled (never a hash)")


def _password(from_stdin: bool, stdin: TextIO) -> tuple[str, bool]:
    """(password, generated)."""
    if not from_stdin:
        return passwords.new_password(), True
    given = stdin.readline().rstrip("\r\n")
    if len(given) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return given, False


class Accounts:
    def __init__(self, store: NotifyStore, regions: dict[str, str]):
        self.store = store
        self.regions = regions

    def _log(self, action: str, username: str, scope: str = "") -> None:
        self.store.log_access(
            actor="operator",
            action=action,
            case_id="-",
            subject=username,
            why="account",
            channel="cli",
            organisation=scope,
            on_behalf_of="-",
        )

    def add(self, username: str, *, region: str | None, national: bool, name: str, password: str) -> str:
        if not USERNAME.match(username):
            raise AccountError(f"username {username!r}: lower case letters, digits, '.', '_' or '-' (2-80)")
        scope = NATIONAL if national else (region or "").upper()
        if scope != NATIONAL and scope not in self.regions:
            raise AccountError(f"--region {region}: not a region of the policy (e.g. {min(self.regions)})")
        if self.store.coordinator(username) is not None:
            raise AccountError(f"{username}: exists already (reset-password or disable it)")
        display = name or ("National coordinator" if scope == NATIONAL else f"Coordinator {self.regions[scope]}")
        self.store.put_coordinator(
            username, passwords.hash_password(password), scope, display_name=display, organisation=scope
        )
        self._log("ACCOUNT_ADDED", username, scope)
        return scope

    def set_disabled(self, username: str, disabled: bool) -> None:
        if not self.store.set_disabled(username, disabled):
            raise AccountError(f"{username}: no such account")
        self._log("ACCOUNT_DISABLED" if disabled else "ACCOUNT_ENABLED", username)

    def reset_password(self, username: str, password: str) -> None:
        if not self.store.set_password_hash(username, passwords.hash_password(password)):
            raise AccountError(f"{username}: no such account")
        self.store.drop_sessions_of(username)
        self._log("PASSWORD_RESET", username)


def run(
    options,
    config: MeshSettings,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    store = NotifyStore.open(NotifyPaths.of(config).database_url)
    try:
        accounts = Accounts(store, load_names(config).regions)
        command = options.coordinator_command
        if command == "list":
            for row in store.coordinator_list():
                state = "disabled" if row["disabled"] else "active"
                kind = " demo" if row["demo"] else ""
                print(f"{row['username']}\t{row['scope']}\t{state}{kind}", file=stdout)
            return 0
        if command in ("disable", "enable"):
            accounts.set_disabled(options.username, command == "disable")
            print(f"{options.username}: {command}d", file=stdout)
            return 0
        password, generated = _password(options.password_stdin, stdin)
        if command == "add":
            scope = accounts.add(
                options.username, region=options.region, national=options.national, name=options.name, password=password
            )
            print(f"{options.username}: added ({scope})", file=stdout)
        else:
            accounts.reset_password(options.username, password)
            print(f"{options.username}: password reset, sessions ended", file=stdout)
        if generated:
            print(f"password: {password}\n(shown once: hand it over on a safe channel)", file=stdout)
        return 0
    except AccountError as problem:
        print(f"error: {problem}", file=stderr)
        return 2
    finally:
        store.close()
