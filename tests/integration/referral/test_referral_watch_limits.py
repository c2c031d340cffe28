"""Resource limits of the referral change stream: open streams per agency, and their lifetime."""

from __future__ import annotations

import grpc
import pytest

from meshcli.client import ReferralClient
from meshcli.supervisor import Stack, private_mesh_env, settings_from
from meshkernel.kafka import prepare_kafka
from referralmesh.v1 import referral_service_pb2 as api
from tests.integration.referral.referral_db_kit import RECEIVER, SENDER

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def address(kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp("referral-watch-limits")
    env = private_mesh_env(
        folder,
        kafka_bootstrap,
        MESH_WATCH_STREAMS_PER_CALLER="1",
        MESH_WATCH_STREAM_SECONDS="3",
        MESH_REFERRAL_METRICS_PORT="0",
    )
    config = settings_from(env)
    prepare_kafka(config, "referral-watch-limits", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    stack.start("referral")
    probe = ReferralClient(config.referral_grpc_address, SENDER)
    probe.wait_until_ready(timeout=60)
    probe.close()
    yield config.referral_grpc_address
    stack.stop_all()


def test_referral_watch_a_second_stream_of_one_agency_is_refused_and_a_stream_ends_after_its_lifetime(address):
    sender, receiver = ReferralClient(address, SENDER), ReferralClient(address, RECEIVER)
    try:
        first = sender.stub.WatchReferrals(api.WatchReferralsRequest(), metadata=sender.metadata, timeout=30)
        with pytest.raises(grpc.RpcError) as refused:
            # The first stream is open once its initial metadata arrives.
            first.initial_metadata()
            next(iter(sender.stub.WatchReferrals(api.WatchReferralsRequest(), metadata=sender.metadata, timeout=10)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another agency has streams of its own.
        other = receiver.stub.WatchReferrals(api.WatchReferralsRequest(), metadata=receiver.metadata, timeout=30)
        assert list(other) == []  # ends by itself after its lifetime (3 s), well before the 30 s deadline
        assert list(first) == []
        assert first.code() == grpc.StatusCode.OK
    finally:
        sender.close()
        receiver.close()
