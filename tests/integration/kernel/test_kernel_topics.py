"""Topic declarations against a real broker: created once, with the declared settings."""

import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from meshkernel.config import MeshSettings
from meshkernel.kafka import connect_admin
from meshkernel.topics import ALL_TOPICS, REFERRAL_EVENTS, ensure_topics

pytestmark = pytest.mark.kafka


def test_topics_are_created_idempotently_with_partitions_and_retention(kafka_bootstrap):
    config = MeshSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:8]}.")
    admin = connect_admin(config, "topic-test", give_up_after=30)
    try:
        created = ensure_topics(admin, config)
        assert sorted(created) == sorted(config.topic(spec.base_name) for spec in ALL_TOPICS)
        assert ensure_topics(admin, config) == []

        name = config.topic(REFERRAL_EVENTS.base_name)
        described = admin.describe_topics([name])[0]
        assert len(described["partitions"]) == config.topic_partitions
        resource = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        text = repr(resource)
        assert str(REFERRAL_EVENTS.retention_ms) in text
    finally:
        admin.close()
