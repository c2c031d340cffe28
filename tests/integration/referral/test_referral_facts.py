"""UpdateBindingFacts over real gRPC (and `mesh referral update-facts`), on SQLite and PostgreSQL:
the facts column, the outbox event that carries the new facts, the access log, the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy import select

from meshcli.client import ReferralClient, consent_for
from meshcli.supervisor import Stack, free_port
from meshkernel import envelope as envelopes
from meshkernel.config import PROJECT_ROOT
from meshkernel.kafka import prepare_kafka
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from services.referral.adapters import event_codec
from services.referral.adapters.grpc_api import ERROR_CODE_HEADER
from services.referral.adapters.storage import ReferralStore, make_engine
from services.referral.adapters.tables import outbox
from tests.conftest import settings_from
from tests.integration.referral.referral_db_kit import BACKENDS, NEXT, RECEIVER, SENDER, STRANGER, fresh_database

pytestmark = pytest.mark.kafka

GRONINGEN_BOUND = common_pb2.BindingFacts(
    residence=[common_pb2.Period(municipality="GM0014", from_date="2015-01-01", to_date="2024-10-01", registered=True)],
    grew_up_in=["GM0599"],
)


def _env_without_tls(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MESH_TLS_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"referral-facts-{request.param}")
    databases = fresh_database(request.param, folder, lambda: request.getfixturevalue("postgres_url"))
    database_url = next(databases)
    env = _env_without_tls(
        {
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
            "DATABASE_URL": database_url,
            "MESH_STATE_DIR": str(folder / "state"),
            "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        }
    )
    config = settings_from(env)
    prepare_kafka(config, "referral-facts-test", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    stack.start("referral")
    probe = ReferralClient(config.referral_grpc_address, SENDER)
    probe.wait_until_ready(timeout=60)
    probe.close()
    yield config.referral_grpc_address, database_url, env
    crashed = stack.crashed()
    stack.stop_all()
    next(databases, None)
    assert not crashed, f"the referral service crashed; see {folder / 'logs'}"


@pytest.fixture
def clients(service):
    address = service[0]
    made = {agency: ReferralClient(address, agency) for agency in (SENDER, RECEIVER, NEXT, STRANGER)}
    yield made
    for client in made.values():
        client.close()


def _created(sender: ReferralClient) -> api.Referral:
    return sender.create(
        api.CreateReferralRequest(
            request_key=f"key-{uuid.uuid4().hex}",
            case_id=f"case-{uuid.uuid4().hex[:10]}",
            receiver_agency=RECEIVER,
            need_domains=["shelter"],
            urgency=common_pb2.NORMAL,
            languages=["nl"],
            asked_in="GM0363",
            facts=common_pb2.BindingFacts(grew_up_in=["GM0363"]),
            consent=consent_for(SENDER, RECEIVER, NEXT),
        )
    )


def _refused(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    return caught.value


def test_the_holder_updates_facts_stored_and_sent_with_the_event(clients, service):
    _address, database_url, _env = service
    sender, receiver = clients[SENDER], clients[RECEIVER]
    created = _created(sender)
    rid = created.referral_id
    accepted = receiver.transition("Accept", rid, 1)

    updated = receiver.update_facts(rid, accepted.version, GRONINGEN_BOUND)
    assert (updated.version, updated.status, updated.holder) == (3, common_pb2.ACCEPTED, RECEIVER)
    assert len(updated.history) == 2  # a facts change is no status change
    assert sender.get(rid).version == 3
    # The sender may record facts too, at the version it saw.
    assert sender.update_facts(rid, 3, GRONINGEN_BOUND).version == 4

    engine = make_engine(database_url)
    try:
        stored = ReferralStore(engine).get(rid)
        assert event_codec.facts_from_document(stored.facts) == GRONINGEN_BOUND and stored.asked_in == "GM0363"
        with engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.value)
                .where(outbox.c.referral_id == rid, outbox.c.event_type == "ReferralFactsChanged")
                .order_by(outbox.c.position)
            ).all()
    finally:
        engine.dispose()
    events = [envelopes.decode(bytes(row.value)).referral for row in rows]
    assert [(e.version, e.actor) for e in events] == [(3, RECEIVER), (4, SENDER)]
    assert all(e.facts == GRONINGEN_BOUND and e.asked_in == "GM0363" for e in events)
    assert events[0].from_status == events[0].to_status == common_pb2.ACCEPTED

    log = receiver.stub.GetAccessLog(
        api.GetAccessLogRequest(case_id=created.case_id), metadata=receiver.metadata, timeout=10
    )
    assert [(e.organisation, e.outcome) for e in log.entries if e.action == "referral.update_facts"] == [
        (RECEIVER, "changed"),
        (SENDER, "changed"),
    ]


def test_refusals_change_nothing(clients):
    sender, receiver, stranger = clients[SENDER], clients[RECEIVER], clients[STRANGER]
    rid = _created(sender).referral_id

    assert _refused(stranger.update_facts, rid, 1, GRONINGEN_BOUND).code() == grpc.StatusCode.NOT_FOUND
    # The receiver is asked, not holding: not yet its facts to change.
    assert _refused(receiver.update_facts, rid, 1, GRONINGEN_BOUND).code() == grpc.StatusCode.PERMISSION_DENIED
    stale = _refused(sender.update_facts, rid, 7, GRONINGEN_BOUND)
    assert stale.code() == grpc.StatusCode.ABORTED
    assert dict(stale.trailing_metadata())[ERROR_CODE_HEADER] == "STALE_VERSION"
    bad = common_pb2.BindingFacts(family_in=["Jan Jansen, Kerkstraat 1"])
    invalid = _refused(sender.update_facts, rid, 1, bad)
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "facts.family_in[0]" in invalid.details() and "Jansen" not in invalid.details()
    assert sender.get(rid).version == 1

    sender.transition("Cancel", rid, 1)
    closed = _refused(sender.update_facts, rid, 2, GRONINGEN_BOUND)
    assert closed.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_update_facts_from_the_command_line(clients, service):
    address, _database_url, env = service
    rid = _created(clients[SENDER]).referral_id
    facts_json = json_format.MessageToJson(GRONINGEN_BOUND)

    def mesh(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "meshcli.main",
                "referral",
                "--address",
                address,
                "--agency",
                SENDER,
                "update-facts",
                rid,
                *arguments,
            ],
            env=env,
            cwd=PROJECT_ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = mesh("--version", "1", "-", stdin=facts_json)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == "2"  # uint64 is a string in protobuf JSON
    stale = mesh("--version", "1", "-", stdin=facts_json)
    assert stale.returncode == 1 and "ABORTED" in stale.stderr
    broken = mesh("--version", "2", "-", stdin='{"residence": 5}')
    assert broken.returncode == 2 and broken.stderr.startswith("error: -:")
