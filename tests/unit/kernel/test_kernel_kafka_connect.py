import logging
import socket

import pytest

from meshkernel.config import MeshSettings
from meshkernel.kafka import connect_admin


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_broker_gives_one_clear_line_per_try_and_backs_off(caplog):
    address = f"127.0.0.1:{_closed_port()}"
    config = MeshSettings(kafka_bootstrap=address)
    delays = []
    # Time passes only through the backoff sleeps, so the schedule is exact.
    caplog.set_level(logging.WARNING, logger="meshkernel.kafka")
    with pytest.raises(ConnectionError, match=f"cannot reach Kafka at {address}"):
        connect_admin(
            config,
            "referral",
            first_delay=1,
            max_delay=4,
            give_up_after=9,
            attempt_timeout=0.2,
            sleep=delays.append,
            clock=lambda: sum(delays),
        )
    assert delays == [1, 2, 4]
    lines = [record for record in caplog.records if record.name == "meshkernel.kafka"]
    assert len(lines) == len(delays)
    for record, delay in zip(lines, delays, strict=False):
        message = record.getMessage()
        assert message.startswith(f"referral: cannot reach Kafka at {address}")
        assert f"retrying in {delay}s" in message
        assert record.exc_info is None and "\n" not in message
