"""The stop deadline: once armed, a stop that does not finish is cut short with a log line that
names what was left unfinished; a stop that finishes first disarms it."""

from __future__ import annotations

import logging
import threading

from meshkernel.shutdown import EXIT_CUT_SHORT, StopDeadline


def _deadline(budget: float):
    exited = threading.Event()
    codes = []

    def exit_process(code: int) -> None:
        codes.append(code)
        exited.set()

    return (
        StopDeadline("region", lambda: "3 record(s) in the producer buffer", budget=budget, exit_process=exit_process),
        exited,
        codes,
    )


def test_an_unfinished_stop_is_cut_short_and_says_what_was_left(caplog):
    deadline, exited, codes = _deadline(0.05)
    with caplog.at_level(logging.ERROR, logger="meshkernel.shutdown"):
        deadline.arm()
        assert exited.wait(timeout=5)
    assert codes == [EXIT_CUT_SHORT]
    assert "stop did not finish" in caplog.text and "3 record(s) in the producer buffer" in caplog.text


def test_arming_twice_keeps_one_deadline():
    deadline, exited, codes = _deadline(0.05)
    deadline.arm()
    deadline.arm()
    assert exited.wait(timeout=5)
    deadline._timer.join(timeout=5)
    assert codes == [EXIT_CUT_SHORT]


def test_a_finished_stop_disarms_the_deadline():
    deadline, exited, codes = _deadline(0.2)
    deadline.arm()
    deadline.disarm()
    deadline._timer.join(timeout=5)
    assert not exited.is_set() and codes == []
