"""JSON log lines: extras add fields but never overwrite the line's own level, service or time."""

from __future__ import annotations

import json
import logging

from meshkernel.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"name": "t", "levelno": logging.INFO, "levelname": "INFO", "msg": "alert raised"})
    record.__dict__.update(extra)
    return json.loads(JsonFormatter("notify").format(record))


def test_an_extra_named_level_keeps_the_log_level_and_is_kept_beside_it() -> None:
    line = _line(level="REGION_COORDINATOR", service="other", case_id="c-1")
    assert line["level"] == "info"
    assert line["service"] == "notify"
    assert line["extra_level"] == "REGION_COORDINATOR"
    assert line["extra_service"] == "other"
    assert line["case_id"] == "c-1"
