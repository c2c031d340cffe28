"""Coordinator sign-in: scrypt at OWASP's cost, rehash on sign-in, throttling, account states."""

import pytest

from services.notify.adapters import passwords
from services.notify.adapters.dashboard import LocalPasswords
from services.notify.adapters.store import NotifyStore
from services.notify.domain.throttle import SignInThrottle, ThrottlePolicy

CHEAP = passwords.ScryptCost(n=2**4, r=8, p=1)  # for tests that are not about the cost


def test_new_hashes_use_owasps_scrypt_cost():
    assert passwords.ScryptCost(n=2**17, r=8, p=1) == passwords.OWASP_COST
    stored = passwords.hash_password("correct horse battery")
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, int(n), int(r), int(p)) == ("scrypt", 2**17, 8, 1)
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert passwords.check_password("correct horse battery", stored)
    assert not passwords.check_password("correct horse battery!", stored)
    assert not passwords.needs_rehash(stored)


def test_a_hash_of_another_cost_needs_a_rehash_and_garbage_never_checks():
    assert passwords.needs_rehash(passwords.hash_password("pw", cost=CHEAP))
    assert passwords.needs_rehash("not a hash")
    for garbage in ("", "scrypt$x$8$1$00$00", "bcrypt$1$2$3$4$5", "scrypt$16$8$1$zz$00"):
        assert not passwords.check_password("pw", garbage)


@pytest.fixture
def store(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    yield store
    store.close()


def test_signing_in_with_a_hash_of_an_older_cost_stores_a_hash_at_the_current_cost(store):
    store.put_coordinator("coord-a", passwords.hash_password("old but right", cost=CHEAP), "GM0518")
    who = LocalPasswords(store).authenticate("coord-a", "old but right")
    assert who is not None and who.scope == "GM0518"
    stored = store.coordinator("coord-a")["password_hash"]
    assert not passwords.needs_rehash(stored) and passwords.check_password("old but right", stored)


def test_a_wrong_password_leaves_the_stored_hash_alone(store):
    old = passwords.hash_password("right password", cost=CHEAP)
    store.put_coordinator("coord-a", old, "GM0518")
    assert LocalPasswords(store, cost=CHEAP).authenticate("coord-a", "wrong password") is None
    assert store.coordinator("coord-a")["password_hash"] == old


def test_disabled_accounts_and_demo_accounts_outside_local_mode_do_not_sign_in(store):
    store.put_coordinator("coord-a", passwords.hash_password("pw-a", cost=CHEAP), "GM0518")
    store.put_coordinator("coord-demo", passwords.hash_password("pw-d", cost=CHEAP), "GM0518", demo=True)
    auth = LocalPasswords(store, cost=CHEAP)
    assert auth.authenticate("coord-a", "pw-a") is not None
    store.set_disabled("coord-a", True)
    assert auth.authenticate("coord-a", "pw-a") is None
    assert auth.authenticate("coord-demo", "pw-d") is None  # production: demo accounts do not exist
    assert LocalPasswords(store, allow_demo=True, cost=CHEAP).authenticate("coord-demo", "pw-d") is not None
    assert auth.authenticate("nobody", "pw") is None


def test_disabling_an_account_ends_its_sessions(store):
    store.put_coordinator("coord-a", "x", "GM0518")
    store.add_session("t1", "coord-a", expires_at=4e9)
    store.set_disabled("coord-a", True)
    assert store.session_user("t1") is None


POLICY = ThrottlePolicy(max_failures=3, window=60, lockout=10, max_lockout=40)


def test_an_account_is_locked_after_repeated_failures_from_any_address():
    throttle = SignInThrottle(account=POLICY, address=ThrottlePolicy(100, 60, 10, 40))
    for n, address in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        assert throttle.retry_after(address, "coord-a", now=n) == 0
        throttle.failed(address, "coord-a", now=n)
    assert throttle.retry_after("10.0.0.9", "coord-a", now=2) == 10  # a new address does not help
    assert throttle.retry_after("10.0.0.9", "COORD-A", now=2) == 10  # nor another spelling
    assert throttle.retry_after("10.0.0.9", "coord-b", now=2) == 0  # other accounts are not locked
    assert throttle.retry_after("10.0.0.9", "coord-a", now=12) == 0  # the lock ends by itself


def test_an_address_is_locked_after_repeated_failures_on_any_account():
    throttle = SignInThrottle(account=ThrottlePolicy(100, 60, 10, 40), address=POLICY)
    for n in range(3):
        throttle.failed("10.0.0.1", f"coord-{n}", now=n)
    assert throttle.retry_after("10.0.0.1", "coord-new", now=3) > 0
    assert throttle.retry_after("10.0.0.2", "coord-new", now=3) == 0


def test_each_further_lock_lasts_twice_as_long_up_to_the_cap():
    throttle = SignInThrottle(account=POLICY, address=ThrottlePolicy(1000, 60, 10, 40))
    now, locks = 0.0, []
    for _ in range(4):
        for _ in range(3):
            throttle.failed("a", "coord-a", now)
        locks.append(throttle.retry_after("a", "coord-a", now))
        now += locks[-1]
    assert locks == [10, 20, 40, 40]


def test_failures_outside_the_window_do_not_count():
    throttle = SignInThrottle(account=POLICY, address=POLICY)
    throttle.failed("a", "coord-a", now=0)
    throttle.failed("a", "coord-a", now=1)
    throttle.failed("a", "coord-a", now=100)
    assert throttle.retry_after("a", "coord-a", now=100) == 0


def test_a_success_clears_the_account_but_not_the_address():
    throttle = SignInThrottle(account=POLICY, address=POLICY)
    throttle.failed("a", "coord-a", now=0)
    throttle.failed("a", "coord-a", now=1)
    throttle.succeeded("coord-a")
    throttle.failed("a", "coord-a", now=2)
    assert throttle.retry_after("b", "coord-a", now=2) == 0  # the account starts over
    assert throttle.retry_after("a", "coord-x", now=2) > 0  # the address has had three failures


def test_the_throttle_forgets_the_stalest_key_when_full():
    throttle = SignInThrottle(account=POLICY, address=POLICY, max_keys=2)
    for address in ("a", "b", "c"):
        for n in range(3):
            throttle.failed(address, "", now=n)
    assert throttle.retry_after("a", "", now=3) == 0
    assert throttle.retry_after("c", "", now=3) > 0


async def test_a_disabled_account_has_no_scope_for_the_grpc_development_identity(store):
    from services.notify.adapters.grpc_api import NotifyApi
    from services.notify.application import AlertDesk

    store.put_coordinator("coord-a", "x", "GM0518")
    api = NotifyApi(AlertDesk(store, {"GM0518": "Haaglanden"}), store, keys=None, development_identities=True)
    assert await api._coordinator_scope("coord-a") == "GM0518"
    store.set_disabled("coord-a", True)
    assert await api._coordinator_scope("coord-a") is None
