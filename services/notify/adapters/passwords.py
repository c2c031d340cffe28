"""The embedded coordinator password store: scrypt hashes, demo coordinators, sessions.

Hash format: `scrypt$n$r$p$<salt hex>$<hash hex>`, so stored hashes keep working when the cost
is raised; a sign-in with a hash of an older cost stores a new hash (`needs_rehash`).

Cost: OWASP's Password Storage Cheat Sheet (scrypt when Argon2id is not available) asks for
N = 2**17, r = 8, p = 1: 128 MiB of memory and a few hundred milliseconds per hash, which is
what makes an offline guess expensive. The dashboard runs at most a few checks at once.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.notify.domain.alerts import NATIONAL

NATIONAL_USERNAME = "coord-national"
SALT_BYTES = 16


@dataclass(frozen=True)
class ScryptCost:
    n: int
    r: int
    p: int
    dklen: int = 32

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * self.n * self.p


OWASP_COST = ScryptCost(n=2**17, r=8, p=1)


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told; allow what the cost needs, with headroom.
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=cost.n,
        r=cost.r,
        p=cost.p,
        dklen=cost.dklen,
        maxmem=2 * cost.memory_bytes + 1024 * 1024,
    )


def hash_password(password: str, *, cost: ScryptCost = OWASP_COST, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, cost)
    return f"scrypt${cost.n}${cost.r}${cost.p}${salt.hex()}${digest.hex()}"


def _parse(stored: str) -> tuple[ScryptCost, bytes, bytes] | None:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return None
        raw = bytes.fromhex(digest)
        return ScryptCost(int(n), int(r), int(p), len(raw)), bytes.fromhex(salt), raw
    except (ValueError, TypeError, AttributeError):
        return None


def check_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    cost, salt, digest = parsed
    try:
        candidate = _scrypt(password, salt, cost)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str, cost: ScryptCost = OWASP_COST) -> bool:
    """True when the stored hash was made with another cost (or salt length) than `cost`."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] != cost or len(parsed[1]) != SALT_BYTES


@functools.lru_cache(maxsize=4)
def dummy_hash(cost: ScryptCost = OWASP_COST) -> str:
    """A hash to check unknown usernames against, so timing does not tell which ones exist."""
    return hash_password("not-a-password", cost=cost, salt=b"\x00" * SALT_BYTES)


def new_password() -> str:
    """A random password for an account an operator creates or resets (about 120 bits)."""
    return secrets.token_urlsafe(15)


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
    state_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"password": password}, handle)
    return password
