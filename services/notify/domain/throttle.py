"""Sign-in throttling: failed attempts are counted per client address and per account.

Guarantees (tested in tests/unit/notify/test_notify_sign_in.py):
- after `max_failures` failed attempts within `window` seconds for one key (an address or an
  account), that key is locked for `lockout` seconds, doubling with every further lock up to
  `max_lockout`; a locked key is refused before any password is checked;
- a success clears the account's count (not the address's: one good password does not buy an
  address more guesses at other accounts);
- memory is bounded: at most `max_keys` keys are tracked; the stalest is forgotten first;
- no wall clock inside: the caller passes `now` (monotonic seconds).

An account lock is what OWASP calls a soft lockout: it ends by itself, so a guesser cannot lock a
coordinator out for good, and an operator can always reset the password (`mesh coordinator`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int
    window: float
    lockout: float
    max_lockout: float


ACCOUNT_POLICY = ThrottlePolicy(max_failures=5, window=15 * 60, lockout=60, max_lockout=60 * 60)
ADDRESS_POLICY = ThrottlePolicy(max_failures=20, window=15 * 60, lockout=60, max_lockout=60 * 60)


@dataclass
class KeyState:
    """One key's recent failures and lock; kept in memory here, or in a shared store by an adapter."""

    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    locks: int = 0

    def retry_after(self, now: float) -> float:
        return max(0.0, self.locked_until - now)

    def failed(self, policy: ThrottlePolicy, now: float) -> None:
        """Count one failure; the `max_failures`-th within the window locks the key."""
        self.failures = [at for at in self.failures if now - at < policy.window] + [now]
        if len(self.failures) >= policy.max_failures:
            self.locked_until = now + min(policy.max_lockout, policy.lockout * 2**self.locks)
            self.locks += 1
            self.failures = []


class Counter:
    """Failures and locks for one kind of key (addresses, or accounts)."""

    def __init__(self, policy: ThrottlePolicy, max_keys: int = 100_000):
        self.policy = policy
        self.max_keys = max_keys
        self._keys: OrderedDict[str, KeyState] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may try now)."""
        entry = self._keys.get(key)
        return 0.0 if entry is None else entry.retry_after(now)

    def failed(self, key: str, now: float) -> None:
        entry = self._keys.pop(key, None) or KeyState()
        self._keys[key] = entry  # most recently used last
        entry.failed(self.policy, now)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


class Throttle(Protocol):
    """What the dashboard asks of a throttle (this in-memory one, or a shared adapter)."""

    def retry_after(self, address: str, username: str, now: float) -> float: ...

    def failed(self, address: str, username: str, now: float) -> None: ...

    def succeeded(self, username: str) -> None: ...


class SignInThrottle:
    def __init__(
        self,
        account: ThrottlePolicy = ACCOUNT_POLICY,
        address: ThrottlePolicy = ADDRESS_POLICY,
        max_keys: int = 100_000,
    ):
        self.accounts = Counter(account, max_keys)
        self.addresses = Counter(address, max_keys)

    def retry_after(self, address: str, username: str, now: float) -> float:
        return max(self.addresses.retry_after(address, now), self.accounts.retry_after(username.lower(), now))

    def failed(self, address: str, username: str, now: float) -> None:
        self.addresses.failed(address, now)
        if username:
            self.accounts.failed(username.lower(), now)

    def succeeded(self, username: str) -> None:
        self.accounts.clear(username.lower())
