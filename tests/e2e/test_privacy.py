"""Privacy (DESIGN.md section 5): what a caller types never reaches logs, spans, metrics or topics.

Markers are planted in every free-form field the APIs accept, in valid and in refused
requests, and in a client's contact details; then every place that could leak is searched.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from kafka import KafkaConsumer

from meshcli.client import NotifyClient, ReferralClient
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshcli.watch import EventWatcher
from meshkernel.topics import ALL_TOPICS, NOTIFICATIONS
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from referralmesh.v1 import region_service_pb2 as region_api
from referralmesh.v1 import region_service_pb2_grpc as region_grpc
from tests.conftest import get_json

pytestmark = pytest.mark.kafka

MARKER = f"Marker{uuid.uuid4().hex[:10]}"


def _refused_creates(case_id: str) -> list[tuple[str, api.CreateReferralRequest]]:
    """One request per free-form field, each carrying the marker where it does not belong."""

    def base():
        request = demo_request(case_id)
        request.request_key = f"privacy-{uuid.uuid4().hex}"
        return request

    variants = []

    def variant(name, change):
        request = base()
        change(request)
        variants.append((name, request))

    variant("receiver_agency", lambda r: setattr(r, "receiver_agency", MARKER))
    # Each lambda runs its steps as the items of a tuple it then drops.
    variant("match.domain", lambda r: (r.match.SetInParent(), setattr(r.match, "domain", MARKER)))  # type: ignore[func-returns-value]
    variant("match.region", lambda r: (setattr(r.match, "domain", "shelter"), setattr(r.match, "region", MARKER)))  # type: ignore[func-returns-value]
    variant("match.language", lambda r: (setattr(r.match, "domain", "shelter"), setattr(r.match, "language", MARKER)))  # type: ignore[func-returns-value]
    variant("need_domains", lambda r: (r.ClearField("need_domains"), r.need_domains.append(MARKER)))
    variant("languages", lambda r: r.languages.append(MARKER))
    variant("asked_in", lambda r: setattr(r, "asked_in", MARKER))
    variant("facts.work.municipality", lambda r: setattr(r.facts.work[0], "municipality", MARKER))
    variant("facts.work.from_date", lambda r: setattr(r.facts.work[0], "from_date", MARKER))
    variant("facts.grew_up_in", lambda r: r.facts.grew_up_in.append(MARKER))
    variant("facts.family_in", lambda r: r.facts.family_in.append(MARKER))
    variant("facts.residence", lambda r: r.facts.residence.add(municipality="GM0518", from_date=MARKER))
    variant("consent.organisations", lambda r: r.consent.organisations.append(MARKER))
    variant("consent.purpose", lambda r: setattr(r.consent, "purpose", MARKER))
    return variants


def _everything_on_the_topics(config) -> bytes:
    consumer = KafkaConsumer(
        *(config.topic(spec.base_name) for spec in ALL_TOPICS),
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"privacy-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    seen = b"".join(
        (record.key or b"") + (record.value or b"") + b"".join(value or b"" for _name, value in record.headers)
        for record in consumer
    )
    consumer.close()
    return seen


def _all_spans(zipkin: str) -> str:
    texts = []
    for service in ("referral", "region", "notify"):
        with urllib.request.urlopen(
            f"{zipkin}/api/v2/traces?serviceName={service}&limit=10000&lookback=3600000", timeout=20
        ) as page:
            texts.append(page.read().decode())
    return "\n".join(texts)


def test_planted_markers_reach_no_log_span_metric_or_topic(traced_mesh, tmp_path):
    _stack, config, zipkin = traced_mesh
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    referrals = ReferralClient(config.referral_grpc_address, SENDER)
    notify = NotifyClient(config.notify_grpc_address, agency=SENDER)
    watcher = EventWatcher(config, [NOTIFICATIONS])
    refusals = {}
    try:
        referrals.wait_until_ready(timeout=60)
        notify.wait_until_ready(timeout=60)
        # A valid referral: the contact and the request key carry the marker.
        contact = notify.seal_contact(case_id, "EMAIL", f"{MARKER.lower()}@example.org")
        assert MARKER.lower().encode() not in contact.ciphertext
        valid = demo_request(case_id, contact)
        valid.request_key = f"key-{MARKER}"
        created = referrals.create(valid)
        # A client message is delivered, so the contact was opened and used somewhere.
        assert len(list(zip(range(4), watcher.events({case_id}, timeout=90), strict=False))) == 4

        for name, request in _refused_creates(case_id):
            with pytest.raises(grpc.RpcError) as refused:
                referrals.create(request)
            refusals[name] = refused.value.code()
        reused = demo_request(case_id)
        reused.request_key = valid.request_key  # the same key with other content is refused
        for call in (
            lambda: referrals.create(reused),
            lambda: referrals.get(MARKER),
            lambda: referrals.transition("Forward", created.referral_id, created.version, next_receiver=MARKER),
            lambda: referrals.transition("Accept", MARKER, 1),
            lambda: notify.seal_contact(case_id, "EMAIL", MARKER),
            lambda: notify.acknowledge(MARKER),
        ):
            with pytest.raises(grpc.RpcError):
                call()
        with grpc.insecure_channel(config.region_grpc_address) as channel:
            region = region_grpc.RegionServiceStub(channel)
            for request in (
                region_api.ResolveRequest(asked_in=MARKER, service="shelter"),
                region_api.ResolveRequest(asked_in="GM0518", service=MARKER),
                region_api.ResolveRequest(asked_in="GM0518", service="shelter", decision_date=MARKER),
                region_api.ResolveRequest(
                    asked_in="GM0518",
                    service="shelter",
                    facts=common_pb2.BindingFacts(
                        work=[common_pb2.Period(municipality=MARKER, from_date="2025-01-01")]
                    ),
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    region.Resolve(request, timeout=10)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError):
                region.GetAssignment(region_api.GetAssignmentRequest(case_id=MARKER), timeout=10)
        receiver = ReferralClient(config.referral_grpc_address, RECEIVER)
        receiver.transition("Acknowledge", created.referral_id, 1)
        receiver.close()
        search = referrals.stub.SearchAgencies(
            api.SearchAgenciesRequest(domain="shelter", region="GM0344"), metadata=referrals.metadata, timeout=10
        )
        assert search.agencies
    finally:
        watcher.close()
        notify.close()
        referrals.close()

    assert set(refusals.values()) <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}, refusals
    time.sleep(2)  # let the span processors flush

    leaks = {}
    for log_file in Path(tmp_path / "logs").glob("*.log"):
        if MARKER.lower() in log_file.read_text(errors="replace").lower():
            leaks[f"log {log_file.name}"] = True
    if MARKER.lower() in _all_spans(zipkin).lower():
        leaks["spans"] = True
    for port in (config.referral_metrics_port, config.region_metrics_port, config.notify_metrics_port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            if MARKER.lower() in page.read().decode().lower():
                leaks[f"metrics :{port}"] = True
    if MARKER.lower().encode() in _everything_on_the_topics(config).lower():
        leaks["kafka topics"] = True
    assert not leaks, f"the marker leaked into: {sorted(leaks)}"
    # The search above proves the spans were there to be searched.
    assert get_json(f"{zipkin}/api/v2/services")
