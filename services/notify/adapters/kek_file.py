"""A key-encryption key held in a local file: the KEK adapter for local mode and small set-ups.

The file holds 32 random bytes, base64. Others may have no access at all and the group may not
write it (0600 as made here; 0400 or 0440 as a Kubernetes secret volume with an fsGroup mounts it).
Outside MESH_MODE=local it is required (MESH_NOTIFY_KEK_PATH) and should be mounted from a
secret store apart from keys.db and its backups; in local mode a missing file is created in the
state folder. Wrapping is AES-256-GCM with a random 96-bit nonce and the caller's context as
associated data: `nonce || ciphertext+tag`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshkernel.private_files import private_file
from services.notify.domain.key_wrapping import KeyUnwrapFailed

KEK_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"referralmesh/kek/v1|"


def _guarded(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o027 == 0


class KeyFileError(Exception):
    """The key file is missing, unreadable, readable by others, or not a 256-bit key."""


class LocalKeyFile:
    def __init__(self, key: bytes):
        if len(key) != KEK_BYTES:
            raise KeyFileError(f"a key-encryption key has {KEK_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._kek_id = "file:" + hashlib.sha256(b"referralmesh/kek-id|" + key).hexdigest()[:16]

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _AAD_PREFIX + context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) <= NONCE_BYTES:
            raise KeyUnwrapFailed("not a wrapped key")
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _AAD_PREFIX + context)
        except InvalidTag:
            raise KeyUnwrapFailed("the wrapped key does not open with this key-encryption key") from None

    def __repr__(self) -> str:  # never the key
        return f"LocalKeyFile({self._kek_id})"

    @classmethod
    def load(cls, path: Path) -> LocalKeyFile:
        path = Path(path)
        try:
            if not _guarded(path):
                raise KeyFileError(f"{path}: others may read it, or the group may write it; chmod 600 it")
            raw = path.read_bytes().strip()
        except OSError as problem:
            raise KeyFileError(f"{path}: {problem.strerror or problem}") from None
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{path}: not base64") from None
        return cls(key)

    @classmethod
    def create(cls, path: Path) -> LocalKeyFile:
        """Write a new random key to `path` (0600, folder 0700); refuses to overwrite one."""
        path = Path(path)
        if path.exists() and path.stat().st_size:
            raise KeyFileError(f"{path}: exists already; a new key would orphan every wrapped key")
        key = secrets.token_bytes(KEK_BYTES)
        private_file(path)
        path.write_bytes(base64.b64encode(key) + b"\n")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> LocalKeyFile:
        path = Path(path)
        return cls.load(path) if path.exists() and path.stat().st_size else cls.create(path)


def key_encryption_key_problem(config, service: str) -> str | None:
    """Production start check: MESH_NOTIFY_KEK_PATH names a private, valid key file."""
    if config.local_mode:
        return None
    if not config.notify_kek_path:
        return (
            "MESH_NOTIFY_KEK_PATH is not set (the key-encryption key for the contact keys in keys.db); "
            "production mode needs it"
        )
    try:
        LocalKeyFile.load(config.notify_kek_path)
    except KeyFileError as problem:
        return f"MESH_NOTIFY_KEK_PATH={problem}"
    return None


def kek_from_settings(kek_file: Path | None, *, local_mode: bool) -> LocalKeyFile:
    """The service's KEK: the configured file (it must exist outside local mode), or in local
    mode the state folder's own key file, made at first start."""
    if kek_file is None:
        raise KeyFileError(
            "MESH_NOTIFY_KEK_PATH is not set (the key-encryption key for keys.db); production mode needs it"
        )
    if local_mode:
        return LocalKeyFile.load_or_create(kek_file)
    return LocalKeyFile.load(kek_file)
