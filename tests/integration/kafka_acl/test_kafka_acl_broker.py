"""On a real secured broker: who gets in, and who may write and read which topic.

The matrix runs on a topic prefix of its own (provisioned here by the admin, as an operator
would for a second mesh), so its probe records never reach the services of the other module.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from meshcli.kafka_ops import provision
from meshcli.supervisor import private_mesh_env
from meshkernel.config import MeshSettings
from meshkernel.kafka import KafkaAccessRefused, connect_admin
from meshkernel.kafka_acl import SERVICES, acl_plan, allowed
from meshkernel.kafka_security import kafka_python_options
from meshkernel.topics import ALL_TOPICS, REFERRAL_EVENTS

pytestmark = pytest.mark.kafka
PROBE = b"acl-probe"
PROBE_KEY = b"acl-probe"  # compacted topics (mesh.directory.v1) refuse records without a key


@pytest.fixture(scope="module")
def matrix_prefix(secure_kafka):
    """A second mesh on the broker: topics and ACLs for a fresh prefix, one record per topic."""
    prefix = f"m{uuid.uuid4().hex[:8]}."
    admin = secure_kafka.settings("admin", MESH_TOPIC_PREFIX=prefix)
    provision(admin, log=lambda line: None)
    producer = KafkaProducer(**kafka_python_options(admin, acks="all"))
    try:
        for spec in ALL_TOPICS:
            producer.send(admin.topic(spec.base_name), PROBE, key=PROBE_KEY, partition=0).get(timeout=30)
    finally:
        producer.close()
    return prefix


def _write(config: MeshSettings, topic: str) -> bool:
    producer = KafkaProducer(**kafka_python_options(config, max_block_ms=30_000))
    try:
        producer.send(topic, PROBE, key=PROBE_KEY, partition=0).get(timeout=30)
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        producer.close(timeout=5)


def _read(config: MeshSettings, topic: str) -> bool:
    """True when the probe record is read back; False when the broker refuses the topic."""
    consumer = KafkaConsumer(**kafka_python_options(config, auto_offset_reset="earliest", enable_auto_commit=False))
    try:
        consumer.assign([TopicPartition(topic, 0)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                polled = consumer.poll(timeout_ms=500)
            except TopicAuthorizationFailedError:
                return False
            if any(record.value == PROBE for records in polled.values() for record in records):
                return True
        raise AssertionError(f"neither the probe record nor a refusal on {topic} within 60 s")
    finally:
        consumer.close()


def test_a_client_without_credentials_is_refused(secure_kafka):
    plaintext = MeshSettings(kafka_bootstrap=secure_kafka.bootstrap)
    with pytest.raises(ConnectionError, match="cannot reach Kafka"):
        connect_admin(plaintext, "anonymous", first_delay=0.5, max_delay=1, give_up_after=4, attempt_timeout=2)
    tls_only = MeshSettings(
        kafka_bootstrap=secure_kafka.bootstrap, kafka_security_protocol="SSL", kafka_ca=secure_kafka.secrets / "ca.crt"
    )
    with pytest.raises(ConnectionError):
        connect_admin(tls_only, "anonymous", first_delay=0.5, max_delay=1, give_up_after=4, attempt_timeout=2)


def test_a_wrong_password_is_refused_naming_the_principal_not_the_password(secure_kafka, tmp_path):
    wrong = tmp_path / "referral.password"
    wrong.write_text("not-the-password\n")
    config = secure_kafka.settings("referral", MESH_KAFKA_PASSWORD_FILE=str(wrong))
    with pytest.raises(KafkaAccessRefused) as refused:
        connect_admin(config, "referral", give_up_after=30)
    assert "refused the credentials of User:referral" in str(refused.value)
    assert "not-the-password" not in str(refused.value)


def test_a_service_with_refused_credentials_exits_with_one_line(secure_kafka, tmp_path):
    wrong = tmp_path / "region.password"
    wrong.write_text("not-the-password\n")
    env = private_mesh_env(tmp_path, secure_kafka.bootstrap)
    env.update(secure_kafka.env("region", MESH_KAFKA_PASSWORD_FILE=str(wrong), MESH_REGION_METRICS_PORT="0"))
    finished = subprocess.run(
        [sys.executable, "-m", "meshcli.main", "serve", "region"], env=env, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("mesh serve region: refusing to start:")
    assert "refused the credentials of User:region" in last
    assert "Traceback" not in finished.stderr and "not-the-password" not in finished.stderr


def test_the_region_service_cannot_write_referral_events(secure_kafka, matrix_prefix):
    region = secure_kafka.settings("region", MESH_TOPIC_PREFIX=matrix_prefix)
    referral = secure_kafka.settings("referral", MESH_TOPIC_PREFIX=matrix_prefix)
    assert not _write(region, region.topic(REFERRAL_EVENTS.base_name))
    assert _write(referral, referral.topic(REFERRAL_EVENTS.base_name))


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_writes_and_reads_exactly_what_the_plan_grants(secure_kafka, matrix_prefix, service):
    config = secure_kafka.settings(service, MESH_TOPIC_PREFIX=matrix_prefix)
    plan = acl_plan(matrix_prefix)
    for spec in ALL_TOPICS:
        topic = config.topic(spec.base_name)
        assert _write(config, topic) == allowed(plan, service, "topic", topic, "WRITE"), f"{service} writes {topic}"
        assert _read(config, topic) == allowed(plan, service, "topic", topic, "READ"), f"{service} reads {topic}"
