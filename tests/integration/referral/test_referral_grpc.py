"""The referral service over real gRPC, two agencies and a stranger, on SQLite and PostgreSQL.

One service process per backend (module scope) with real Kafka; each test uses its own cases.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import grpc
import pytest

from meshcli.client import ReferralClient, consent_for
from meshcli.supervisor import Stack, private_mesh_env
from meshkernel.kafka import prepare_kafka
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from services.referral.adapters.grpc_api import ERROR_CODE_HEADER, ERROR_DETAIL_HEADER
from services.referral.application import encode_cursor
from tests.conftest import settings_from
from tests.integration.referral.referral_db_kit import BACKENDS, NEXT, RECEIVER, SENDER, STRANGER, fresh_database

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"referral-{request.param}")
    databases = fresh_database(request.param, folder, lambda: request.getfixturevalue("postgres_url"))
    database_url = next(databases)
    env = private_mesh_env(folder, kafka_bootstrap, DATABASE_URL=database_url)
    for key in [key for key in env if key.startswith("MESH_TLS_")]:
        del env[key]
    config = settings_from(env)
    prepare_kafka(config, "referral-grpc-test", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    stack.start("referral")
    probe = ReferralClient(config.referral_grpc_address, SENDER)
    probe.wait_until_ready(timeout=60)
    probe.close()
    yield config.referral_grpc_address, database_url
    crashed = stack.crashed()
    stack.stop_all()
    next(databases, None)
    assert not crashed, f"the referral service crashed; see {folder / 'logs'}"


@pytest.fixture
def clients(service):
    address, _ = service
    made = {agency: ReferralClient(address, agency) for agency in (SENDER, RECEIVER, NEXT, STRANGER)}
    yield made
    for client in made.values():
        client.close()


def request_for(
    case_id: str | None = None,
    *,
    key: str | None = None,
    receiver: str = RECEIVER,
    need: str = "shelter",
    sender: str = SENDER,
) -> api.CreateReferralRequest:
    case_id = case_id or f"case-{uuid.uuid4().hex[:10]}"
    return api.CreateReferralRequest(
        request_key=key or f"key-{uuid.uuid4().hex}",
        case_id=case_id,
        receiver_agency=receiver,
        need_domains=[need],
        urgency=common_pb2.NORMAL,
        languages=["nl", "en"],
        asked_in="GM0363",
        facts=common_pb2.BindingFacts(grew_up_in=["GM0363"]),
        consent=consent_for(sender, receiver, NEXT),
    )


def refused(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def trailing(error: grpc.RpcError) -> dict[str, str]:
    metadata: Any = error.trailing_metadata() or ()
    return dict(metadata)


def test_authorization_matrix(clients):
    sender, receiver, stranger = clients[SENDER], clients[RECEIVER], clients[STRANGER]
    created = sender.create(request_for())
    rid = created.referral_id
    assert receiver.get(rid).version == 1 and sender.get(rid).sender == SENDER

    # A stranger learns nothing, on reads and on every transition.
    assert refused(stranger.get, rid).code() == grpc.StatusCode.NOT_FOUND
    for method in ("Acknowledge", "Accept", "Cancel", "Start", "ReportContactLost"):
        assert refused(stranger.transition, method, rid, 1).code() == grpc.StatusCode.NOT_FOUND, method
    assert (
        refused(stranger.transition, "Decline", rid, 1, reason=common_pb2.NO_CAPACITY).code()
        == grpc.StatusCode.NOT_FOUND
    )
    # Parties may only do what their role allows.
    assert refused(sender.transition, "Accept", rid, 1).code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused(receiver.transition, "Cancel", rid, 1).code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        refused(sender.transition, "Decline", rid, 1, reason=common_pb2.NO_CAPACITY).code()
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert receiver.get(rid).version == 1  # nothing changed

    accepted = receiver.transition("Accept", rid, 1)
    assert accepted.status == common_pb2.ACCEPTED and accepted.holder == RECEIVER
    assert refused(sender.transition, "Start", rid, 2).code() == grpc.StatusCode.PERMISSION_DENIED
    started = receiver.transition("Start", rid, 2)
    completed = receiver.transition("Complete", rid, started.version, outcome=common_pb2.HELPED)
    assert completed.status == common_pb2.COMPLETED and completed.version == 4

    log = receiver.stub.GetAccessLog(
        api.GetAccessLogRequest(case_id=created.case_id), metadata=receiver.metadata, timeout=10
    )
    denied = [(entry.organisation, entry.action) for entry in log.entries if entry.outcome == "denied"]
    assert (STRANGER, "referral.read") in denied and (STRANGER, "referral.accept") in denied
    assert (SENDER, "referral.accept") in denied
    assert (
        refused(
            stranger.stub.GetAccessLog,
            api.GetAccessLogRequest(case_id=created.case_id),
            metadata=stranger.metadata,
            timeout=10,
        ).code()
        == grpc.StatusCode.NOT_FOUND
    )


def test_racing_transitions_exactly_one_wins(clients, service):
    sender, receiver = clients[SENDER], clients[RECEIVER]
    address, _ = service
    for _round in range(3):
        rid = sender.create(request_for()).referral_id
        # The sender cancels while the receiver accepts, both at version 1; and a second
        # receiver worker (own connection) accepts at the same time.
        second = ReferralClient(address, RECEIVER)
        contenders = [(sender, "Cancel"), (receiver, "Accept"), (second, "Accept")]
        results: list[str] = []
        barrier = threading.Barrier(len(contenders))

        def go(client, method, barrier=barrier, rid=rid, results=results):
            barrier.wait()
            try:
                client.transition(method, rid, 1)
                results.append("won")
            except grpc.RpcError as error:
                results.append(error.code().name)

        threads = [threading.Thread(target=go, args=contender) for contender in contenders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        second.close()
        assert sorted(results) == ["ABORTED", "ABORTED", "won"], results
        assert sender.get(rid).version == 2


def test_create_is_idempotent_by_request_key(clients):
    sender = clients[SENDER]
    request = request_for(key=f"retry-{uuid.uuid4().hex}")
    first, again = sender.create(request), sender.create(request)
    assert first.referral_id == again.referral_id
    changed = api.CreateReferralRequest()
    changed.CopyFrom(request)
    changed.need_domains[:] = ["health"]
    error = refused(sender.create, changed)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert trailing(error)[ERROR_CODE_HEADER] == "REQUEST_KEY_REUSED"


def test_illegal_and_stale_transitions_say_why_and_change_nothing(clients):
    sender, receiver = clients[SENDER], clients[RECEIVER]
    rid = sender.create(request_for()).referral_id
    error = refused(receiver.transition, "Complete", rid, 1, outcome=common_pb2.HELPED)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "REQUESTED" in error.details()
    assert trailing(error)[ERROR_CODE_HEADER] == "ILLEGAL_TRANSITION"
    assert json.loads(trailing(error)[ERROR_DETAIL_HEADER]) == {
        "action": "COMPLETE",
        "referral_id": rid,
        "status": "REQUESTED",
    }

    error = refused(receiver.transition, "Accept", rid, 5)
    assert error.code() == grpc.StatusCode.ABORTED
    assert trailing(error)[ERROR_CODE_HEADER] == "STALE_VERSION"
    assert json.loads(trailing(error)[ERROR_DETAIL_HEADER])["actual"] == 1
    assert receiver.get(rid).version == 1


def _watch(client: ReferralClient, cursor: str):
    return client.stub.WatchReferrals(api.WatchReferralsRequest(cursor=cursor), metadata=client.metadata, timeout=60)


def test_stream_resumes_after_a_disconnect_without_loss_or_repeat(service):
    address, _ = service
    # Agencies no other test uses, so their feeds hold only this test's changes.
    sender_id, receiver_id = "exit-the-hague", "shelter-utrecht"
    sender, receiver = ReferralClient(address, sender_id), ReferralClient(address, receiver_id)
    try:
        case_id = f"case-{uuid.uuid4().hex[:10]}"
        rid = sender.create(request_for(case_id, sender=sender_id, receiver=receiver_id)).referral_id
        receiver.transition("Acknowledge", rid, 1)
        receiver.transition("Accept", rid, 2)

        stream = _watch(receiver, encode_cursor(0))
        first = [next(stream), next(stream)]
        stream.cancel()  # the agency's connection drops here
        assert [change.event_type for change in first] == ["ReferralRequested", "ReferralAcknowledged"]

        receiver.transition("Start", rid, 3)
        other = sender.create(request_for(case_id, sender=sender_id, receiver=receiver_id)).referral_id

        resumed = _watch(receiver, first[-1].cursor)
        rest = [next(resumed) for _ in range(3)]
        assert [(change.event_type, change.referral.version) for change in rest] == [
            ("ReferralAccepted", 3),
            ("ReferralStarted", 4),
            ("ReferralRequested", 1),
        ]
        assert [change.referral.referral_id for change in rest] == [rid, rid, other]
        cursors = [change.cursor for change in first + rest]
        assert len(set(cursors)) == len(cursors)

        # Live push: consent withdrawn by the sender reaches the receiver's open stream...
        withdrawn = sender.stub.WithdrawConsent(
            api.WithdrawConsentRequest(case_id=case_id), metadata=sender.metadata, timeout=10
        )
        assert {referral.referral_id for referral in withdrawn.cancelled} == {rid, other}
        assert all(referral.cancel_reason == common_pb2.CONSENT_WITHDRAWN for referral in withdrawn.cancelled)
        live = [next(resumed) for _ in range(2)]
        resumed.cancel()
        assert {(change.event_type, change.referral.referral_id) for change in live} == {
            ("ReferralConsentWithdrawn", rid),
            ("ReferralConsentWithdrawn", other),
        }
        # ...and the sender's, from the very start, ends with the same two changes.
        sender_stream = _watch(sender, encode_cursor(0))
        sender_changes = [next(sender_stream) for _ in range(7)]
        sender_stream.cancel()
        assert [change.cursor for change in sender_changes[-2:]] == [change.cursor for change in live]

        bad = refused(lambda: next(_watch(receiver, "not-a-cursor")))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        sender.close()
        receiver.close()


def test_list_search_and_paging_over_grpc(clients):
    sender = clients[NEXT]  # NEXT sends only here
    made = {sender.create(request_for(sender=NEXT, receiver=RECEIVER)).referral_id for _ in range(5)}
    seen, token = [], ""
    while True:
        page = sender.stub.ListReferrals(
            api.ListReferralsRequest(direction=api.SENT, page_size=2, page_token=token),
            metadata=sender.metadata,
            timeout=10,
        )
        seen.extend(referral.referral_id for referral in page.referrals)
        token = page.next_page_token
        if not token:
            break
    assert set(seen) == made and len(seen) == 5
    changed_filter = refused(
        sender.stub.ListReferrals,
        api.ListReferralsRequest(direction=api.RECEIVED_BY_ME, page_size=2, page_token=page_token_of(sender)),
        metadata=sender.metadata,
        timeout=10,
    )
    assert changed_filter.code() == grpc.StatusCode.INVALID_ARGUMENT

    found = sender.stub.SearchAgencies(
        api.SearchAgenciesRequest(domain="shelter", region="GM0344"), metadata=sender.metadata, timeout=10
    )
    assert {agency.agency_id for agency in found.agencies} >= {"shelter-utrecht", "central-utrecht"}
    assert all("shelter" in agency.need_domains for agency in found.agencies)
    bad = refused(
        sender.stub.SearchAgencies, api.SearchAgenciesRequest(region="Utrecht"), metadata=sender.metadata, timeout=10
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def page_token_of(client) -> str:
    page = client.stub.ListReferrals(
        api.ListReferralsRequest(direction=api.SENT, page_size=1), metadata=client.metadata, timeout=10
    )
    return page.next_page_token


def _raw_call(client: ReferralClient, method: str, payload: bytes):
    call = client.channel.unary_unary(
        f"/referralmesh.v1.ReferralService/{method}",
        request_serializer=lambda raw: raw,
        response_deserializer=api.Referral.FromString,
    )
    return call(payload, metadata=client.metadata, timeout=10)


def test_unknown_fields_and_oversize_payloads_are_refused(clients):
    sender = clients[SENDER]
    rid = sender.create(request_for()).referral_id
    # Field 99 (varint 1) does not exist in GetReferralRequest.
    extra = api.GetReferralRequest(referral_id=rid).SerializeToString() + b"\x98\x06\x01"
    error = refused(_raw_call, sender, "GetReferral", extra)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown field" in error.details()
    assert (
        _raw_call(sender, "GetReferral", api.GetReferralRequest(referral_id=rid).SerializeToString()).referral_id == rid
    )

    # Hidden one level down, inside the consent of a create.
    request = request_for()
    consent = request.consent.SerializeToString() + b"\xa2\x06\x03abc"  # field 100, a string
    request.ClearField("consent")
    nested = request.SerializeToString() + b"\x52" + bytes([len(consent)]) + consent  # field 10
    error = refused(_raw_call, sender, "CreateReferral", nested)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "consent" in error.details()

    huge = request_for()
    huge.case_id = "x" * 300_000
    assert refused(sender.create, huge).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
