"""Agency webhooks, the pure parts: the signature and the retry schedule.

Signature: HMAC-SHA256 over "<timestamp>.<body>" with the agency's secret, hex-encoded in
`X-Mesh-Signature: sha256=<hex>`, the Unix timestamp in `X-Mesh-Timestamp`. A receiver
recomputes it, compares in constant time, and refuses timestamps older than a few minutes
(replay protection). `X-Mesh-Notification-Id` is stable across retries and replays: receivers
deduplicate on it.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

SIGNATURE_HEADER = "X-Mesh-Signature"
TIMESTAMP_HEADER = "X-Mesh-Timestamp"
ID_HEADER = "X-Mesh-Notification-Id"
ATTEMPT_HEADER = "X-Mesh-Attempt"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> bool:
    """What a receiver does; here for agencies to copy and for the tests."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[float, float], float] = random.uniform
) -> float:
    """Delay before try number `attempt + 1` after `attempt` failed tries (attempt >= 1).

    Exponential (base, 2*base, 4*base, ...) up to `cap`, with "equal jitter": a random point in
    the upper half, so retries of many deliveries spread out but never come sooner than half.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return rand(ceiling / 2, ceiling)


def retryable(status: int | None) -> bool:
    """Timeouts, connection errors (None), 408, 429 and 5xx are worth another try; other 4xx not...

    ...except that an agency misconfiguration (401/403/404) is usually fixed within hours, so we
    retry those too and let the dead-letter topic and the replay command handle the rest. Only a
    2xx counts as delivered.
    """
    return status is None or not (200 <= status < 300)
