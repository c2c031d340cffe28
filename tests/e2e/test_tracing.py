"""One referral, one trace: spans of all three services joined across the Kafka hops."""

from __future__ import annotations

import time
import urllib.parse
import uuid

import pytest

from tests.conftest import get_json, send_demo_referral

pytestmark = pytest.mark.kafka


def find_case_traces(zipkin: str, case_id: str, want_services: set[str], timeout: float = 60.0) -> list[list[dict]]:
    query = urllib.parse.urlencode(
        {
            "annotationQuery": f"referralmesh.case_id={case_id}",
            "limit": 10,
            "lookback": 3_600_000,
        }
    )
    deadline = time.monotonic() + timeout
    traces: list[list[dict]] = []
    while time.monotonic() < deadline:
        traces = get_json(f"{zipkin}/api/v2/traces?{query}")
        services = {span.get("localEndpoint", {}).get("serviceName") for trace in traces for span in trace}
        if want_services <= services:
            return traces
        time.sleep(0.5)
    return traces


def test_one_referral_is_one_trace_through_all_three_services(traced_mesh):
    _stack, config, zipkin = traced_mesh
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    send_demo_referral(config, case_id)

    traces = find_case_traces(zipkin, case_id, {"referral", "region", "notify"})
    assert len(traces) == 1, f"expected one trace for the case, found {len(traces)}"
    spans = traces[0]
    assert len({span["traceId"] for span in spans}) == 1
    by_id = {span["id"]: span for span in spans}

    def service(span):
        return span["localEndpoint"]["serviceName"]

    def parent_of(span):
        return by_id.get(span.get("parentId", ""))

    server = [s for s in spans if s["name"].endswith("createreferral") and s.get("kind") == "SERVER"]
    assert len(server) == 1 and service(server[0]) == "referral" and "parentId" not in server[0]

    def consumer_span(in_service: str, topic_suffix: str) -> dict:
        found = [
            s
            for s in spans
            if service(s) == in_service and s.get("kind") == "CONSUMER" and s["name"].endswith(topic_suffix)
        ]
        assert found, f"no consumer span of {in_service} for {topic_suffix}"
        return found[0]

    # referral: gRPC server span -> outbox relay send span -> region process span
    region_process = consumer_span("region", "referral.events.v1")
    relay_send = parent_of(region_process)
    assert relay_send is not None and service(relay_send) == "referral" and relay_send["kind"] == "PRODUCER"
    assert parent_of(relay_send) is server[0]
    # region -> notify, through the assignments topic
    notify_process = consumer_span("notify", "region.assignments.v1")
    upstream = parent_of(notify_process)
    assert upstream is not None and service(upstream) == "region"
    # Case ids are searchable attributes on every Kafka span.
    for span in (relay_send, region_process, notify_process):
        assert span["tags"]["referralmesh.case_id"] == case_id
