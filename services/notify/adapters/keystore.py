"""Per-case data keys for sealed contacts, and crypto-shredding.

Each case gets its own random 256-bit AES-GCM key on first use. A contact is sealed as
nonce (12 bytes) + AES-GCM ciphertext, bound to the case and key id as associated data, so a
ciphertext cannot be opened under another case. Erasing a client deletes the key: every copy
of the ciphertext (notify database, referral database, Kafka topics, backups of those) is from
then on unreadable.

Data keys are stored only wrapped by a key-encryption key (domain/key_wrapping.py: a KMS, or the
local key file of adapters/kek_file.py), with the case and key id bound into the wrapping. A
copy of this file alone (a stolen disk, a backup) opens nothing.

Where the wrapped keys live (the `WrappedKeys` port):
- `KeyFile`, the embedded default: their own SQLite file (0600), apart from every other store,
  with `secure_delete` (deleted rows are overwritten with zeros) and a rollback journal (no WAL
  file that could hold old pages). A key store from before wrapping (table `case_keys`) is
  wrapped in place at first open.
- `KeyTable`: a table of the notify database (PostgreSQL, shared by every replica), so any
  replica can seal and open, and an erasure through one replica shreds the key for all of them.
  The erased row is vacuumed at once; the database's WAL archive and backups keep it for their
  own retention, so keep those short (or encrypted with a key destroyed on schedule).
Backups of either must have a short retention (or none): a key restored from a backup (with its
KEK) would undo an erasure.

Every method blocks; asynchronous code calls `await keys.aio.seal(...)` (its own thread pool).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, delete, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from meshkernel.private_files import private_file
from referralmesh.v1 import common_pb2
from services.notify.adapters.store import OffLoop, schema_transaction
from services.notify.domain.contact import Contact
from services.notify.domain.key_wrapping import KeyEncryptionKey, KeyUnwrapFailed

log = logging.getLogger(__name__)

NONCE_BYTES = 12


class ContactUnavailable(Exception):
    """The sealed contact cannot be opened: the key is gone (erased) or the seal is not valid."""


def _aad(case_id: str, key_id: str) -> bytes:
    return f"referralmesh/contact/v1|{case_id}|{key_id}".encode()


def _wrap_context(case_id: str, key_id: str) -> bytes:
    return f"{case_id}|{key_id}".encode()


class WrappedKeys(Protocol):
    """Storage of wrapped data keys, one per case: key id, KEK id, the wrapped key."""

    def get(self, case_id: str) -> tuple[str, str, bytes] | None: ...

    def add(self, case_id: str, key_id: str, kek_id: str, wrapped: bytes) -> None:
        """Store the case's key unless it has one already (the first one stays)."""

    def delete(self, case_id: str) -> bool:
        """Destroy the case's key; True if it had one."""

    def close(self) -> None: ...


class KeyFile:
    """The embedded default: wrapped keys in their own SQLite file."""

    def __init__(self, path: Path):
        self.path = private_file(Path(path))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS wrapped_case_keys (case_id TEXT PRIMARY KEY,"
            " key_id TEXT NOT NULL, kek_id TEXT NOT NULL, wrapped_key BLOB NOT NULL,"
            " created_at REAL NOT NULL)"
        )

    def wrap_plain_keys(self, kek: KeyEncryptionKey) -> None:
        """Keys stored before wrapping existed: wrap them, then destroy the plain copies."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='case_keys'").fetchone():
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for case_id, key_id, key, created_at in self._db.execute(
                "SELECT case_id, key_id, key, created_at FROM case_keys"
            ).fetchall():
                self._db.execute(
                    "INSERT OR IGNORE INTO wrapped_case_keys (case_id, key_id, kek_id, wrapped_key, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (case_id, key_id, kek.kek_id, kek.wrap(key, _wrap_context(case_id, key_id)), created_at),
                )
            self._db.execute("DROP TABLE case_keys")
            self._db.execute("COMMIT")
            self._db.execute("VACUUM")  # secure_delete zeroed the rows; no free page keeps them

    def get(self, case_id: str) -> tuple[str, str, bytes] | None:
        with self._lock:
            return self._db.execute(
                "SELECT key_id, kek_id, wrapped_key FROM wrapped_case_keys WHERE case_id = ?", (case_id,)
            ).fetchone()

    def add(self, case_id: str, key_id: str, kek_id: str, wrapped: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO wrapped_case_keys (case_id, key_id, kek_id, wrapped_key, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (case_id, key_id, kek_id, wrapped, time.time()),
            )

    def delete(self, case_id: str) -> bool:
        with self._lock:
            erased = self._db.execute("DELETE FROM wrapped_case_keys WHERE case_id = ?", (case_id,)).rowcount > 0
            if erased:
                self._db.execute("VACUUM")  # no free page keeps the old bytes either
        return erased

    def close(self) -> None:
        self._db.close()


key_metadata = MetaData()
wrapped_case_keys = Table(
    "wrapped_case_keys",
    key_metadata,
    Column("case_id", String(128), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("kek_id", String(128), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)


class KeyTable:
    """Wrapped keys in a table of the (PostgreSQL) notify database, shared by every replica."""

    def __init__(self, engine: Engine):
        self.engine = engine
        with schema_transaction(engine) as connection:
            key_metadata.create_all(connection)

    def get(self, case_id: str) -> tuple[str, str, bytes] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(wrapped_case_keys.c.key_id, wrapped_case_keys.c.kek_id, wrapped_case_keys.c.wrapped_key).where(
                    wrapped_case_keys.c.case_id == case_id
                )
            ).first()
        return (row[0], row[1], bytes(row[2])) if row else None

    def add(self, case_id: str, key_id: str, kek_id: str, wrapped: bytes) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                postgresql.insert(wrapped_case_keys)
                .values(case_id=case_id, key_id=key_id, kek_id=kek_id, wrapped_key=wrapped, created_at=time.time())
                .on_conflict_do_nothing(index_elements=[wrapped_case_keys.c.case_id])
            )

    def delete(self, case_id: str) -> bool:
        with self.engine.begin() as connection:
            erased = connection.execute(delete(wrapped_case_keys).where(wrapped_case_keys.c.case_id == case_id))
        if erased.rowcount > 0:
            self._vacuum()
        return erased.rowcount > 0

    def _vacuum(self) -> None:
        """Reclaim the erased row's space now, so its bytes are overwritten sooner (VACUUM runs
        outside a transaction). The erasure itself is committed already; a failure here is logged."""
        try:
            with self.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM wrapped_case_keys"))
        except Exception:  # the key row is gone either way
            log.warning("vacuum after a key erasure failed", exc_info=True)

    def close(self) -> None:
        """The engine belongs to the notify store, which disposes of it."""


class KeyStore:
    def __init__(self, keys: Path | WrappedKeys, kek: KeyEncryptionKey):
        """`keys`: a file path (the embedded SQLite key file) or a `WrappedKeys` storage."""
        if isinstance(keys, (str, Path)):
            key_file = KeyFile(Path(keys))
            key_file.wrap_plain_keys(kek)
            keys = key_file
        self.keys: WrappedKeys = keys
        self.kek = kek
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify-keys")
        self.aio = OffLoop(self, self._executor)  # `await keys.aio.seal(...)` from async code

    @property
    def path(self) -> Path | None:
        return getattr(self.keys, "path", None)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.keys.close()

    def _key(self, case_id: str) -> tuple[str, bytes] | None:
        row = self.keys.get(case_id)
        if row is None:
            return None
        key_id, kek_id, wrapped = row
        if kek_id != self.kek.kek_id:
            raise ContactUnavailable("the case's key is wrapped by another key-encryption key")
        try:
            return key_id, self.kek.unwrap(wrapped, _wrap_context(case_id, key_id))
        except KeyUnwrapFailed:
            raise ContactUnavailable("the case's key does not unwrap with this key-encryption key") from None

    def seal(self, case_id: str, contact: Contact) -> common_pb2.SealedContact:
        if not case_id:
            raise ValueError("case_id is required")
        found = self._key(case_id)
        if found is None:
            key_id, key = uuid.uuid4().hex, AESGCM.generate_key(bit_length=256)
            self.keys.add(case_id, key_id, self.kek.kek_id, self.kek.wrap(key, _wrap_context(case_id, key_id)))
            found = self._key(case_id)  # another replica's seal may have stored the case's key first
            if found is None:
                raise ContactUnavailable("the case's key was erased while sealing")
        key_id, key = found
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, contact.to_bytes(), _aad(case_id, key_id))
        return common_pb2.SealedContact(key_id=key_id, ciphertext=ciphertext)

    def open(self, case_id: str, sealed: common_pb2.SealedContact) -> Contact:
        found = self._key(case_id)
        if found is None:
            raise ContactUnavailable("no key for this case (erased, or never sealed here)")
        key_id, key = found
        if sealed.key_id != key_id or len(sealed.ciphertext) <= NONCE_BYTES:
            raise ContactUnavailable("the seal does not belong to this case's key")
        nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
        try:
            return Contact.from_bytes(AESGCM(key).decrypt(nonce, body, _aad(case_id, key_id)))
        except InvalidTag:
            raise ContactUnavailable("the seal does not open with this case's key") from None

    def erase(self, case_id: str) -> bool:
        """Destroy the case's key (crypto-shredding). True if a key existed."""
        return self.keys.delete(case_id)

    def has_key(self, case_id: str) -> bool:
        return self.keys.get(case_id) is not None
