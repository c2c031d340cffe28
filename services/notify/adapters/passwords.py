"""The embedded coordinator password store: scrypt hashes, demo coordinators, sessions.

Hash format: `scrypt$n$r$p$<salt hex>$<hash hex>` (n=2**14, r=8, p=1, 32-byte hash), so the
parameters can be raised later without breaking stored hashes.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import yaml

from services.notify.domain.alerts import NATIONAL

N, R, P, DKLEN = 2 ** 14, 8, 1, 32
NATIONAL_USERNAME = "coord-national"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                   dklen=len(bytes.fromhex(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


# A password check against a stored dummy hash for unknown users, so timing does not tell
# which usernames exist.
DUMMY_HASH = hash_password("not-a-password", salt=b"\x00" * 16)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def region_names(policy_path: Path) -> dict[str, str]:
    """Region code -> name, from the region policy file (the shared list of regions)."""
    with open(policy_path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    return {entry["code"]: entry.get("name", entry["code"]) for entry in document.get("regions", [])}


def demo_usernames(regions: dict[str, str]) -> dict[str, str]:
    """username -> scope: one coordinator per region and one national coordinator."""
    users = {f"coord-{code.lower()}": code for code in sorted(regions)}
    users[NATIONAL_USERNAME] = NATIONAL
    return users


def demo_password(state_file: Path, configured: str | None) -> str:
    """The configured demo password, else a random one kept (0600) in the state folder."""
    if configured:
        return configured
    if state_file.exists():
        return json.loads(state_file.read_text())["password"]
    password = secrets.token_urlsafe(12)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"password": password}, handle)
    return password
