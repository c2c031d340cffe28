"""WatchAlerts refuses an escalation level the contract does not define (found by `make fuzz`:
it ended the stream with UNKNOWN)."""

from __future__ import annotations

import grpc
import pytest

from referralmesh.v1 import events_pb2, notify_service_pb2
from services.notify.adapters.grpc_api import NotifyApi


class Aborted(Exception):
    pass


class Context:
    def __init__(self):
        self.status = None

    async def abort(self, code, details, trailing_metadata=()):
        self.status = (code, details)
        raise Aborted


async def test_an_undefined_level_is_an_invalid_argument():
    notify_api = NotifyApi.__new__(NotifyApi)
    request = notify_service_pb2.WatchAlertsRequest(levels=[events_pb2.EscalationLevel.ValueType(999)])
    context = Context()

    with pytest.raises(Aborted):
        async for _alert in notify_api.WatchAlerts(request, context):
            pass

    assert context.status == (grpc.StatusCode.INVALID_ARGUMENT, "levels: unknown value")
