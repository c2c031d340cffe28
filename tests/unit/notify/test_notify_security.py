import pytest
import sqlalchemy

from services.notify.adapters import passwords
from services.notify.adapters.store import NotifyStore
from services.notify.adapters.webhooks import WebhookConfigError, load_webhooks
from services.notify.domain import webhook


def test_passwords_are_stored_as_salted_scrypt_hashes():
    cheap = passwords.ScryptCost(n=2**4, r=8, p=1)  # the cost itself: test_notify_sign_in.py
    stored = passwords.hash_password("correct horse", cost=cheap)
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert passwords.check_password("correct horse", stored)
    assert not passwords.check_password("wrong horse", stored)
    assert passwords.hash_password("correct horse", cost=cheap) != stored  # salted
    assert not passwords.check_password("x", "garbage")


def test_there_is_a_demo_coordinator_per_region_and_a_national_one():
    users = passwords.demo_usernames({"GM0518": "Den Haag", "GM0344": "Utrecht"})
    assert users == {"coord-gm0518": "GM0518", "coord-gm0344": "GM0344", "coord-national": "NATIONAL"}


def test_the_signature_covers_timestamp_and_body_and_old_timestamps_are_refused():
    secret, body = b"s" * 32, b'{"a":1}'
    signature = webhook.sign(secret, 1_700_000_000, body)
    assert webhook.verify(secret, "1700000000", body, signature, now=1_700_000_010)
    assert not webhook.verify(secret, "1700000000", body + b" ", signature, now=1_700_000_010)
    assert not webhook.verify(secret, "1700000001", body, signature, now=1_700_000_010)
    assert not webhook.verify(b"t" * 32, "1700000000", body, signature, now=1_700_000_010)
    assert not webhook.verify(secret, "1700000000", body, signature, now=1_700_000_000 + 3600)


def test_backoff_grows_exponentially_with_jitter_and_stays_under_the_cap():
    lowest = [webhook.backoff_delay(n, 1.0, 30.0, rand=lambda lo, hi: lo) for n in range(1, 8)]
    highest = [webhook.backoff_delay(n, 1.0, 30.0, rand=lambda lo, hi: hi) for n in range(1, 8)]
    assert highest == [1, 2, 4, 8, 16, 30, 30]
    assert lowest == [0.5, 1, 2, 4, 8, 15, 15]
    assert len({webhook.backoff_delay(3, 1.0, 30.0) for _ in range(20)}) > 1


def test_webhook_config_needs_https_and_a_real_secret(tmp_path):
    path = tmp_path / "webhooks.yaml"
    path.write_text("agencies:\n  - {agency: a, url: 'http://example.org/x', secret: 'sixteen-chars-ok'}\n")
    with pytest.raises(WebhookConfigError):
        load_webhooks(path)
    path.write_text("agencies:\n  - {agency: a, url: 'https://example.org/x', secret: 'short'}\n")
    with pytest.raises(WebhookConfigError):
        load_webhooks(path)
    path.write_text("agencies:\n  - {agency: a, url: 'https://example.org/x', secret_env: HOOK_SECRET}\n")
    endpoint = load_webhooks(path, environ={"HOOK_SECRET": "x" * 20})["a"]
    assert endpoint.secret == b"x" * 20 and "x" * 20 not in repr(endpoint)


def test_the_access_log_is_append_only(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    store.log_access(actor="coord-gm0518", action="ACKNOWLEDGE", case_id="case-1", subject="e1", why="acknowledge")
    with store.engine.begin() as connection, pytest.raises(sqlalchemy.exc.DatabaseError):
        connection.execute(sqlalchemy.text("UPDATE access_log SET actor = 'someone else'"))
    with store.engine.begin() as connection, pytest.raises(sqlalchemy.exc.DatabaseError):
        connection.execute(sqlalchemy.text("DELETE FROM access_log"))
    assert [e["actor"] for e in store.access_entries("case-1")] == ["coord-gm0518"]


def test_a_notification_is_recorded_once_by_id(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    details = dict(
        notification_id="n1",
        case_id="c",
        audience="AGENCY",
        recipient="a",
        template="t",
        language="nl",
        channel="webhook",
        envelope=b"x",
    )
    assert store.record_notification(**details) is True
    assert store.record_notification(**details) is False
    assert len(store.deliveries()) == 1
