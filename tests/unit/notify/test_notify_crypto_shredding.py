"""Contact details are sealed per case; erasing the case's key makes every copy unreadable."""

import secrets

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from referralmesh.v1 import common_pb2
from services.notify.adapters.grpc_api import erase_client
from services.notify.adapters.kek_file import LocalKeyFile
from services.notify.adapters.keystore import ContactUnavailable, KeyStore
from services.notify.adapters.store import NotifyStore
from services.notify.domain.contact import Contact, InvalidContact

MARKER = "+31 6 1234 MARKER 5678"
KEK = LocalKeyFile(secrets.token_bytes(32))


def test_a_sealed_contact_opens_only_for_its_own_case(tmp_path):
    keys = KeyStore(tmp_path / "keys.db", KEK)
    sealed = keys.seal("case-a", Contact("sms", MARKER))
    assert MARKER.encode() not in sealed.ciphertext
    assert keys.open("case-a", sealed) == Contact("sms", MARKER)
    keys.seal("case-b", Contact("email", "b@example.org"))
    with pytest.raises(ContactUnavailable):
        keys.open("case-b", sealed)  # another case's key, and bound to case-a as associated data
    flipped = sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 0x01])
    tampered = common_pb2.SealedContact(key_id=sealed.key_id, ciphertext=flipped)
    with pytest.raises(ContactUnavailable):
        keys.open("case-a", tampered)


def test_erasing_a_client_destroys_the_key_and_every_copy_becomes_unreadable(tmp_path):
    keys = KeyStore(tmp_path / "keys.db", KEK)
    sealed = keys.seal("case-a", Contact("sms", MARKER))
    key_bytes = keys._key("case-a")[1]
    other = keys.seal("case-b", Contact("sms", "+31 6 0000 0000"))
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    store.update_case("case-a", contact_key_id=sealed.key_id, contact_ciphertext=sealed.ciphertext)
    backup_copy = sealed.SerializeToString()  # e.g. a Kafka record or a backup of another database

    assert erase_client(keys, store, "case-a") is True
    assert erase_client(keys, store, "case-a") is False  # already gone

    with pytest.raises(ContactUnavailable):
        keys.open("case-a", common_pb2.SealedContact.FromString(backup_copy))
    assert store.case("case-a").contact_ciphertext is None
    # The key bytes are gone from the key store file itself (secure_delete + VACUUM) ...
    keys.close()
    assert key_bytes not in (tmp_path / "keys.db").read_bytes()
    # ... so no key left anywhere opens the copy; other clients are untouched.
    reopened = KeyStore(tmp_path / "keys.db", KEK)
    nonce, body = sealed.ciphertext[:12], sealed.ciphertext[12:]
    for case_id, key_id, _kek, wrapped, _at in reopened.keys._db.execute("SELECT * FROM wrapped_case_keys"):
        key = KEK.unwrap(wrapped, f"{case_id}|{key_id}".encode())
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(nonce, body, f"referralmesh/contact/v1|case-a|{sealed.key_id}".encode())
    assert reopened.open("case-b", other).address == "+31 6 0000 0000"


def test_a_new_seal_after_erasure_gets_a_new_key(tmp_path):
    keys = KeyStore(tmp_path / "keys.db", KEK)
    first = keys.seal("case-a", Contact("email", "a@example.org"))
    keys.erase("case-a")
    second = keys.seal("case-a", Contact("email", "a@example.org"))
    assert first.key_id != second.key_id
    with pytest.raises(ContactUnavailable):
        keys.open("case-a", first)


def test_contacts_never_print_their_address_and_bad_ones_are_refused():
    contact = Contact("sms", MARKER)
    assert "MARKER" not in repr(contact) and "MARKER" not in str(contact) and "MARKER" not in contact.masked()
    assert "MARKER" not in Contact("email", "MARKER@example.org").masked()
    for channel, address in (("fax", "123456"), ("email", "no-at-sign"), ("sms", "12"), ("sms", "")):
        with pytest.raises(InvalidContact) as problem:
            Contact(channel, address)
        assert address not in str(problem.value) or not address
