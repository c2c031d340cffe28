"""`mesh referral …`: a person can do with the command line what the API allows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from google.protobuf import json_format

from meshcli.client import ReferralClient
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshcli.supervisor import Stack, private_mesh_env
from meshkernel.config import PROJECT_ROOT
from meshkernel.kafka import prepare_kafka
from tests.conftest import settings_from

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def service(kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp("referral-cli")
    env = private_mesh_env(folder, kafka_bootstrap)
    for key in [key for key in env if key.startswith("MESH_TLS_")]:
        del env[key]
    config = settings_from(env)
    prepare_kafka(config, "referral-cli-test", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    stack.start("referral")
    probe = ReferralClient(config.referral_grpc_address, SENDER)
    probe.wait_until_ready(timeout=60)
    probe.close()
    yield env, folder
    stack.stop_all()


def mesh(env, agency: str, *arguments: str, stdin: str | None = None) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "meshcli.main", "referral", "--agency", agency, *arguments],
        env=env,
        cwd=PROJECT_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    if text.startswith("{\n"):
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines() if line]


def _watch(env, agency: str, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meshcli.main", "referral", "--agency", agency, "watch", *arguments],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_referral_from_the_command_line_through_its_life(service):
    env, folder = service
    case_id = f"case-{uuid.uuid4().hex[:10]}"
    request = folder / "referral.json"
    request.write_text(json_format.MessageToJson(demo_request(case_id)))

    [created] = mesh(env, SENDER, "create", str(request))
    referral_id = created["referralId"]
    assert created["status"] == "REQUESTED" and created["sender"] == SENDER

    [seen] = mesh(env, RECEIVER, "get", referral_id)
    assert seen["caseId"] == case_id

    watcher = _watch(env, SENDER)  # from now on
    try:
        time.sleep(3)  # let the stream open before the change it should see
        [acknowledged] = mesh(env, RECEIVER, "acknowledge", referral_id, "--version", "1")
        assert acknowledged["status"] == "RECEIVED" and acknowledged["version"] == "2"
        pushed = json.loads(watcher.stdout.readline())
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert pushed["eventType"] == "ReferralAcknowledged" and pushed["referral"]["referralId"] == referral_id

    received = mesh(env, RECEIVER, "list", "--direction", "received", "--status", "RECEIVED")
    assert [item["referralId"] for item in received] == [referral_id]
    assert mesh(env, SENDER, "list", "--direction", "received") == []

    shelters = mesh(env, SENDER, "agencies", "--domain", "shelter", "--region", "GM0344")
    assert RECEIVER in [agency["agencyId"] for agency in shelters]

    [cancelled] = mesh(env, SENDER, "withdraw-consent", case_id)
    assert (cancelled["status"], cancelled["cancelReason"]) == ("CANCELLED", "CONSENT_WITHDRAWN")

    # Resuming from the last cursor seen gives what happened since, and nothing before it.
    watcher = _watch(env, SENDER, "--cursor", pushed["cursor"])
    try:
        resumed = json.loads(watcher.stdout.readline())
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert resumed["eventType"] == "ReferralConsentWithdrawn"

    log = mesh(env, SENDER, "access-log", case_id)
    actions = {entry["action"] for entry in log}
    assert {"referral.create", "referral.read", "referral.acknowledge", "referral.withdraw_consent"} <= actions
