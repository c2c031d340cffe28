"""Privacy at rest: contact keys are stored wrapped by a key-encryption key, state files are private."""

import asyncio
import os
import secrets
import shutil
import sqlite3
import stat

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshkernel.config import MeshSettings
from meshkernel.private_files import private_file, private_folder
from meshkernel.safety import StartRefused, check_start
from meshkernel.sqlite import sqlite_engine
from referralmesh.v1 import common_pb2
from services.notify.adapters.channels import OutboxChannel
from services.notify.adapters.dashboard import web_tls_problem
from services.notify.adapters.kek_file import KeyFileError, LocalKeyFile, kek_from_settings, key_encryption_key_problem
from services.notify.adapters.keystore import ContactUnavailable, KeyStore
from services.notify.adapters.store import NotifyStore
from services.notify.domain.contact import Contact

PHONE = "+31 6 1111 2222"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _aad(case_id: str, key_id: str) -> bytes:
    return f"referralmesh/contact/v1|{case_id}|{key_id}".encode()


def test_a_copy_of_keys_db_without_the_kek_opens_nothing(tmp_path):
    keys = KeyStore(tmp_path / "live" / "keys.db", LocalKeyFile.create(tmp_path / "secret" / "kek.key"))
    sealed = {case: keys.seal(case, Contact("sms", PHONE)) for case in ("case-a", "case-b", "case-c")}
    keys.close()
    stolen = tmp_path / "stolen" / "keys.db"
    stolen.parent.mkdir()
    shutil.copy(tmp_path / "live" / "keys.db", stolen)

    # Whoever has the copy and a key-encryption key of their own opens nothing ...
    thief = KeyStore(stolen, LocalKeyFile(secrets.token_bytes(32)))
    for case, seal in sealed.items():
        with pytest.raises(ContactUnavailable):
            thief.open(case, seal)
    thief.close()
    # ... and no 32 bytes anywhere in the file are a key that opens a sealed contact.
    raw = stolen.read_bytes()
    for case, seal in sealed.items():
        nonce, body = seal.ciphertext[:12], seal.ciphertext[12:]
        for start in range(len(raw) - 31):
            with pytest.raises(InvalidTag):
                AESGCM(raw[start : start + 32]).decrypt(nonce, body, _aad(case, seal.key_id))
    # With the KEK the copy opens (it is the same key store): the KEK is what was missing.
    restored = KeyStore(stolen, LocalKeyFile.load(tmp_path / "secret" / "kek.key"))
    assert restored.open("case-a", sealed["case-a"]).address == PHONE


def test_a_wrapped_key_moved_to_another_case_does_not_unwrap(tmp_path):
    kek = LocalKeyFile(secrets.token_bytes(32))
    keys = KeyStore(tmp_path / "keys.db", kek)
    sealed = keys.seal("case-a", Contact("sms", PHONE))
    keys.seal("case-b", Contact("sms", "+31 6 3333 4444"))
    wrapped_a = keys.keys._db.execute("SELECT wrapped_key FROM wrapped_case_keys WHERE case_id='case-a'").fetchone()[0]
    keys.keys._db.execute(
        "UPDATE wrapped_case_keys SET wrapped_key=?, key_id=? WHERE case_id='case-b'", (wrapped_a, sealed.key_id)
    )
    with pytest.raises(ContactUnavailable):
        keys.open("case-b", sealed)


def test_a_key_store_from_before_wrapping_is_wrapped_at_first_open(tmp_path):
    path = tmp_path / "keys.db"
    plain_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(12)
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE case_keys (case_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, key BLOB NOT NULL,"
        " created_at REAL NOT NULL)"
    )
    old.execute("INSERT INTO case_keys VALUES ('case-a', 'k1', ?, 0)", (plain_key,))
    old.commit()
    old.close()
    ciphertext = nonce + AESGCM(plain_key).encrypt(nonce, Contact("sms", PHONE).to_bytes(), _aad("case-a", "k1"))

    keys = KeyStore(path, LocalKeyFile(secrets.token_bytes(32)))
    assert keys.open("case-a", common_pb2.SealedContact(key_id="k1", ciphertext=ciphertext)).address == PHONE
    keys.close()
    assert plain_key not in path.read_bytes()


def test_the_kek_file_is_private_and_required_outside_local_mode(tmp_path):
    path = tmp_path / "secrets" / "kek.key"
    created = LocalKeyFile.create(path)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert LocalKeyFile.load(path).kek_id == created.kek_id
    assert "file:" in repr(created) and path.read_text().strip() not in repr(created)
    with pytest.raises(KeyFileError):
        LocalKeyFile.create(path)  # never overwrites a key that wrapped keys depend on
    for loose in (0o644, 0o604, 0o660):
        os.chmod(path, loose)
        with pytest.raises(KeyFileError, match="chmod 600"):
            LocalKeyFile.load(path)
    os.chmod(path, 0o440)  # as a Kubernetes secret volume with an fsGroup mounts it
    assert LocalKeyFile.load(path).kek_id == created.kek_id
    with pytest.raises(KeyFileError, match="MESH_NOTIFY_KEK_PATH"):
        kek_from_settings(None, local_mode=False)
    with pytest.raises(KeyFileError, match=r"no such file|No such file"):
        kek_from_settings(tmp_path / "missing.key", local_mode=False)
    made = kek_from_settings(tmp_path / "local" / "kek.key", local_mode=True)
    assert kek_from_settings(tmp_path / "local" / "kek.key", local_mode=True).kek_id == made.kek_id


def test_state_files_are_0600_in_0700_folders_whatever_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = tmp_path / "state" / "notify"
        store = NotifyStore.open(f"sqlite:///{folder / 'notify.db'}")
        store.log_access(actor="a", action="X", case_id="c")  # WAL and shared-memory files now exist
        keys = KeyStore(folder / "keys.db", LocalKeyFile.create(folder / "kek.key"))
        keys.seal("case-a", Contact("sms", PHONE))
        outbox = OutboxChannel(folder / "client-outbox.jsonl")
        asyncio.run(outbox.send(Contact("sms", PHONE), "hello", notification_id="n1", language="en", template="t"))
        referral = sqlite_engine(f"sqlite:///{tmp_path / 'var' / 'referral.db'}")
        with referral.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
        files = list(folder.iterdir()) + list((tmp_path / "var").iterdir())
        assert {p.name for p in files} >= {
            "notify.db",
            "notify.db-wal",
            "keys.db",
            "kek.key",
            "client-outbox.jsonl",
            "referral.db",
        }
        for path in files:
            assert _mode(path) == 0o600, path.name
        assert _mode(folder) == 0o700 and _mode(tmp_path / "var") == 0o700
        store.close()
        keys.close()
        referral.dispose()
    finally:
        os.umask(previous)


def test_an_existing_folder_of_ours_is_tightened(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    private_folder(loose)
    assert _mode(loose) == 0o700
    file = loose / "f"
    file.write_text("x")
    os.chmod(file, 0o644)
    private_file(file)
    assert _mode(file) == 0o600 and file.read_text() == "x"


def _production(tmp_path, **values):
    """Production settings with the kernel's needs met (gRPC mutual TLS, Kafka credentials)."""
    present = tmp_path / "present.pem"
    present.write_text("x")
    password = tmp_path / "notify.password"
    password.write_text("secret\n")
    return MeshSettings(
        mode="production",
        tls_cert=present,
        tls_key=present,
        tls_ca=present,
        tls_crl=present,
        kafka_security_protocol="SASL_SSL",
        kafka_username="notify",
        kafka_password_file=password,
        **values,
    )


def test_a_production_start_of_notify_needs_a_private_kek_file_and_https_for_the_dashboard(tmp_path):
    needs = (key_encryption_key_problem, web_tls_problem)
    with pytest.raises(StartRefused, match=r"^MESH_NOTIFY_KEK_PATH is not set"):
        check_start(_production(tmp_path), "notify", needs)
    loose = tmp_path / "loose.key"
    loose.write_text("AAAA")
    os.chmod(loose, 0o644)
    with pytest.raises(StartRefused, match="chmod 600"):
        check_start(_production(tmp_path, notify_kek_path=loose), "notify", needs)
    kek = tmp_path / "secret" / "kek.key"
    LocalKeyFile.create(kek)
    with pytest.raises(StartRefused, match=r"^MESH_NOTIFY_WEB_TLS_CERT is not set"):
        check_start(_production(tmp_path, notify_kek_path=kek), "notify", needs)
    check_start(_production(tmp_path, notify_kek_path=kek, notify_web_tls_proxy=True), "notify", needs)
    present = tmp_path / "present.pem"
    check_start(
        _production(tmp_path, notify_kek_path=kek, notify_web_tls_cert=present, notify_web_tls_key=present),
        "notify",
        needs,
    )
    check_start(MeshSettings(mode="local"), "notify", needs)  # local mode makes its own key file
