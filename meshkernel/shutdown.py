"""Every service exits within 10 s of SIGTERM, whether Kafka answers or not.

A clean stop flushes what it can: the producer's buffer, consumer offsets, spans. With the
broker gone those flushes wait on network timeouts of 30-40 s each, so an orchestrator (or the
supervisor of `make run`) would have to SIGKILL the service. Instead the first stop signal
arms a deadline; a stop still running when it expires is cut short, after one log line that
says what was left unfinished and why nothing is lost by it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Below the 10 s promised, leaving room for the last log line and the exit itself.
STOP_BUDGET_ENV = "MESH_STOP_BUDGET_SECONDS"
DEFAULT_STOP_BUDGET = 8.0
EXIT_CUT_SHORT = 3  # the stop did not finish; distinct from a crash (1) and a refusal to start (2)


def stop_budget() -> float:
    raw = os.environ.get(STOP_BUDGET_ENV, "") or DEFAULT_STOP_BUDGET
    try:
        return max(0.5, min(float(raw), 9.5))
    except ValueError:
        return DEFAULT_STOP_BUDGET


class StopDeadline:
    """Armed by the first stop signal; if the process is still stopping when it expires, logs
    `unfinished()` and exits. Arming twice keeps the first deadline."""

    def __init__(
        self,
        service: str,
        unfinished: Callable[[], str],
        budget: float | None = None,
        exit_process: Callable[[int], None] = os._exit,
    ):
        self.service = service
        self.unfinished = unfinished
        self.budget = stop_budget() if budget is None else budget
        self.exit_process = exit_process
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.budget, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _expire(self) -> None:
        try:
            detail = self.unfinished()
        except Exception as error:  # the exit must happen even if the description fails
            detail = f"(could not tell: {type(error).__name__})"
        log.error(
            "%s: stop did not finish within %.1fs; exiting without it. Unfinished: %s",
            self.service,
            self.budget,
            detail,
        )
        _flush_telemetry()
        self.exit_process(EXIT_CUT_SHORT)


def _flush_telemetry(timeout_millis: int = 500) -> None:
    """Spans and log lines of the stop itself are worth a short wait, not more."""
    try:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush(timeout_millis)
    except Exception:  # telemetry must never hold the exit
        pass
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
