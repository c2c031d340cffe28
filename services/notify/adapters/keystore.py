"""Per-case data keys for sealed contacts, and crypto-shredding.

Each case gets its own random 256-bit AES-GCM key on first use. A contact is sealed as
nonce (12 bytes) + AES-GCM ciphertext, bound to the case and key id as associated data, so a
ciphertext cannot be opened under another case. Erasing a client deletes the key: every copy
of the ciphertext (notify database, referral database, Kafka topics, backups of those) is from
then on unreadable.

The embedded default keeps keys in their own SQLite file, apart from every other store, with
`secure_delete` (deleted rows are overwritten with zeros) and a rollback journal (no WAL file
that could hold old pages). Backups of this file must have a short retention (or none): a key
restored from a backup would undo an erasure. In production a KMS/HSM (for instance HashiCorp
Vault's transit engine, or a cloud KMS) implements the same three calls.
"""
from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from referralmesh.v1 import common_pb2
from services.notify.domain.contact import Contact

NONCE_BYTES = 12


class ContactUnavailable(Exception):
    """The sealed contact cannot be opened: the key is gone (erased) or the seal is not valid."""


def _aad(case_id: str, key_id: str) -> bytes:
    return f"referralmesh/contact/v1|{case_id}|{key_id}".encode()


class KeyStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        fresh = not self.path.exists()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("CREATE TABLE IF NOT EXISTS case_keys (case_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,"
                         " key BLOB NOT NULL, created_at REAL NOT NULL)")
        if fresh:
            os.chmod(self.path, 0o600)

    def close(self) -> None:
        self._db.close()

    def _key(self, case_id: str) -> tuple[str, bytes] | None:
        row = self._db.execute("SELECT key_id, key FROM case_keys WHERE case_id = ?", (case_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def seal(self, case_id: str, contact: Contact) -> common_pb2.SealedContact:
        if not case_id:
            raise ValueError("case_id is required")
        with self._lock:
            found = self._key(case_id)
            if found is None:
                found = (uuid.uuid4().hex, AESGCM.generate_key(bit_length=256))
                self._db.execute("INSERT INTO case_keys (case_id, key_id, key, created_at) VALUES (?, ?, ?, ?)",
                                 (case_id, found[0], found[1], time.time()))
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
            cursor = self._db.execute("DELETE FROM case_keys WHERE case_id = ?", (case_id,))
            erased = cursor.rowcount > 0
            if erased:
                self._db.execute("VACUUM")  # no free page keeps the old bytes either
        return erased

    def has_key(self, case_id: str) -> bool:
        with self._lock:
            return self._key(case_id) is not None
