"""The key-encryption-key port: how per-case data keys are wrapped before they are stored.

The key store (adapters/keystore.py) keeps one data key per case, and keeps it only wrapped by a
key-encryption key (KEK) that lives elsewhere: a KMS or HSM in production, a key file mounted
from a secret store, or (MESH_MODE=local) a key file in the state folder. A copy of the key
store alone therefore opens nothing. Adapters: adapters/kek_file.py (`LocalKeyFile`); a KMS
adapter (Vault transit, a cloud KMS) implements the same three members.

`context` is bound into the wrapping (authenticated), so a wrapped key moved to another case
or key id does not unwrap.
"""

from __future__ import annotations

from typing import Protocol


class KeyUnwrapFailed(Exception):
    """The wrapped key does not open with this KEK (another KEK, another context, or tampered)."""


class KeyEncryptionKey(Protocol):
    @property
    def kek_id(self) -> str:
        """Names the KEK (never its bytes), stored beside every key it wrapped."""

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key; raises KeyUnwrapFailed."""
