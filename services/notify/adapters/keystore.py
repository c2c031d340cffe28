"""Per-case data keys for sealed contacts, and crypto-shredding.

Each case gets its own random 256-bit AES-GCM key on first use. A contact is sealed as
nonce (12 bytes) + AES-GCM ciphertext, bound to the case and key id as associated data, so a
ciphertext cannot be opened under another case. Erasing a client deletes the key: every copy
of the ciphertext (notify database, referral database, Kafka topics, backups of those) is from
then on unreadable.

Data keys are stored only wrapped by a key-encryption key (domain/key_wrapping.py: a KMS, or the
local key file of adapters/kek_file.py), with the case and key id bound into the wrapping. A
copy of this file alone (a stolen disk, a backup) opens nothing.

The embedded default keeps the wrapped keys in their own SQLite file (0600), apart from every
other store, with `secure_delete` (deleted rows are overwritten with zeros) and a rollback
journal (no WAL file that could hold old pages). Backups of this file must have a short
retention (or none): a key restored from a backup (with its KEK) would undo an erasure.
A key store from before wrapping (table `case_keys`) is wrapped in place at first open.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshkernel.private_files import private_file
from referralmesh.v1 import common_pb2
from services.notify.domain.contact import Contact
from services.notify.domain.key_wrapping import KeyEncryptionKey, KeyUnwrapFailed

NONCE_BYTES = 12


class ContactUnavailable(Exception):
    """The sealed contact cannot be opened: the key is gone (erased) or the seal is not valid."""


def _aad(case_id: str, key_id: str) -> bytes:
    return f"referralmesh/contact/v1|{case_id}|{key_id}".encode()


def _wrap_context(case_id: str, key_id: str) -> bytes:
    return f"{case_id}|{key_id}".encode()


class KeyStore:
    def __init__(self, path: Path, kek: KeyEncryptionKey):
        self.path = private_file(Path(path))
        self.kek = kek
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS wrapped_case_keys (case_id TEXT PRIMARY KEY,"
            " key_id TEXT NOT NULL, kek_id TEXT NOT NULL, wrapped_key BLOB NOT NULL,"
            " created_at REAL NOT NULL)"
        )
        self._wrap_unwrapped_keys()

    def _wrap_unwrapped_keys(self) -> None:
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
                    (case_id, key_id, self.kek.kek_id, self.kek.wrap(key, _wrap_context(case_id, key_id)), created_at),
                )
            self._db.execute("DROP TABLE case_keys")
            self._db.execute("COMMIT")
            self._db.execute("VACUUM")  # secure_delete zeroed the rows; no free page keeps them

    def close(self) -> None:
        self._db.close()

    def _key(self, case_id: str) -> tuple[str, bytes] | None:
        row = self._db.execute(
            "SELECT key_id, kek_id, wrapped_key FROM wrapped_case_keys WHERE case_id = ?", (case_id,)
        ).fetchone()
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
        with self._lock:
            found = self._key(case_id)
            if found is None:
                found = (uuid.uuid4().hex, AESGCM.generate_key(bit_length=256))
                self._db.execute(
                    "INSERT INTO wrapped_case_keys (case_id, key_id, kek_id, wrapped_key, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        case_id,
                        found[0],
                        self.kek.kek_id,
                        self.kek.wrap(found[1], _wrap_context(case_id, found[0])),
                        time.time(),
                    ),
                )
        key_id, key = found
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = nonce + AESGCM(key).encrypt(nonce, contact.to_bytes(), _aad(case_id, key_id))
        return common_pb2.SealedContact(key_id=key_id, ciphertext=ciphertext)

    def open(self, case_id: str, sealed: common_pb2.SealedContact) -> Contact:
        with self._lock:
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
        with self._lock:
            cursor = self._db.execute("DELETE FROM wrapped_case_keys WHERE case_id = ?", (case_id,))
            erased = cursor.rowcount > 0
            if erased:
                self._db.execute("VACUUM")  # no free page keeps the old bytes either
        return erased

    def has_key(self, case_id: str) -> bool:
        with self._lock:
            found = self._db.execute("SELECT 1 FROM wrapped_case_keys WHERE case_id = ?", (case_id,)).fetchone()
        return found is not None
