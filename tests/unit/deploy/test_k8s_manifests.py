"""The Kubernetes manifests (deploy/k8s) follow the code: topics, partitions, settings, ACLs.

`make k8s-check` validates the manifests against the Kubernetes and operator schemas; these
tests catch what a schema cannot: a topic, retention or setting name that drifted from the
services' own declarations.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from meshkernel.config import MeshSettings
from meshkernel.kafka_acl import OBSERVER, SERVICES, acl_plan, allowed
from meshkernel.topics import ALL_TOPICS

BASE = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "base"


def documents(*parts: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((BASE.joinpath(*parts)).read_text(encoding="utf-8")) if doc]


def mesh_config() -> dict[str, str]:
    (config,) = [doc for doc in documents("config.yaml") if doc["kind"] == "ConfigMap"]
    return config["data"]


def kafka_topics() -> dict[str, dict]:
    return {doc["spec"]["topicName"]: doc["spec"] for doc in documents("kafka", "topics.yaml")}


def workloads() -> list[dict]:
    return (
        documents("referral", "deployment.yaml")
        + documents("referral", "migrate-job.yaml")
        + documents("region", "statefulset.yaml")
        + documents("notify", "statefulset.yaml")
    )


def containers() -> list[dict]:
    return [
        container
        for doc in workloads()
        if "template" in doc.get("spec", {})
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]


def setting_names() -> set[str]:
    """Every environment variable MeshSettings reads."""
    names = set()
    prefix = MeshSettings.model_config.get("env_prefix", "")
    for name, field in MeshSettings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()) or ():
            names.add(str(choice).upper())
    return names


def test_every_declared_topic_is_a_kafka_topic_with_its_retention_and_policy():
    declared = {spec.base_name: spec for spec in ALL_TOPICS}
    topics = kafka_topics()
    assert set(topics) == set(declared)
    for name, spec in declared.items():
        assert int(topics[name]["config"]["retention.ms"]) == spec.retention_ms, name
        assert topics[name]["config"]["cleanup.policy"] == spec.cleanup_policy, name


def test_partitions_agree_between_topics_settings_and_autoscaling():
    partitions = int(mesh_config()["MESH_TOPIC_PARTITIONS"])
    assert partitions == MeshSettings.model_fields["topic_partitions"].default
    assert {spec["partitions"] for spec in kafka_topics().values()} == {partitions}
    (scaled,) = [doc for doc in documents("region", "scaledobject.yaml") if doc["kind"] == "ScaledObject"]
    # A worker beyond the partition count would get no partition.
    assert scaled["spec"]["maxReplicaCount"] == partitions
    assert scaled["spec"]["triggers"][0]["metadata"]["topic"] in kafka_topics()


def test_every_mesh_setting_in_the_manifests_is_one_the_services_read():
    configured = set(mesh_config())
    configured |= {env["name"] for container in containers() for env in container.get("env", [])}
    mesh_settings = {name for name in configured if name.startswith("MESH_")} | (
        configured & {"KAFKA_BOOTSTRAP", "DATABASE_URL"}
    )
    unknown = sorted(mesh_settings - setting_names())
    assert not unknown, f"settings no service reads: {unknown}"


def strimzi_grants(user: dict) -> set[tuple[str, str, str, str, str]]:
    """A KafkaUser's ACLs as (principal, resource, name, pattern, OPERATION), as in kafka_acl."""
    operation = {"DescribeConfigs": "DESCRIBE_CONFIGS"}
    pattern = {"literal": "literal", "prefix": "prefixed"}
    return {
        (
            user["metadata"]["name"],
            acl["resource"]["type"],
            acl["resource"]["name"],
            pattern[acl["resource"]["patternType"]],
            operation.get(op, op.upper()),
        )
        for acl in user["spec"]["authorization"]["acls"]
        for op in acl["operations"]
    }


@pytest.mark.parametrize("principal", [*SERVICES, OBSERVER])
def test_each_kafka_user_has_exactly_the_grants_of_the_acl_plan(principal):
    """The cluster's ACLs are the local broker's (meshkernel/kafka_acl.py): what a service may
    read and write does not depend on where it runs."""
    (user,) = [doc for doc in documents("kafka", "users.yaml") if doc["metadata"]["name"] == principal]
    granted = strimzi_grants(user)
    plan = acl_plan(topic_prefix="")
    planned = {(g.principal, g.resource, g.name, g.pattern, g.operation) for g in plan if g.principal == principal}
    # The manifests spell out DESCRIBE beside READ and WRITE; Kafka implies it, the plan leaves it out.
    granted_beyond_plan = {
        grant for grant in granted - planned if not allowed(plan, grant[0], grant[1], grant[2], grant[4])
    }
    assert not granted_beyond_plan
    assert planned <= granted


def test_every_container_runs_restricted():
    for container in containers():
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert security["seccompProfile"]["type"] == "RuntimeDefault", container["name"]


def test_the_image_holds_every_package_the_project_installs():
    import tomllib

    root = BASE.parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        line.split()[1]
        for line in (root / "Containerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ") and "--from" not in line
    }
    # referralmesh is generated from proto/ inside the build stage.
    assert packages - {"referralmesh"} <= copied
    assert "proto" in copied


def workload_environment(service: str, files: Path) -> dict[str, str]:
    """The service container's environment, with every mounted file made under `files`."""
    (workload,) = [
        doc
        for doc in workloads()
        if doc["kind"] in ("Deployment", "StatefulSet") and doc["metadata"]["name"] == service
    ]
    (container,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == service]
    environment = dict(mesh_config())
    environment.update({env["name"]: env.get("value", "secret") for env in container.get("env", [])})
    for name, value in environment.items():
        if value.startswith(("/etc/mesh/", "/run/mesh/")):
            path = files / value.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("present\n")
            environment[name] = str(path)
    environment["MESH_STATE_DIR"] = str(files / "state")
    return environment


@pytest.mark.parametrize("service", ["referral", "region", "notify"])
def test_each_service_passes_its_production_start_checks_with_the_manifests(service, tmp_path, monkeypatch):
    from meshkernel.safety import check_start
    from services.notify.adapters.dashboard import web_tls_problem

    for name in list(os.environ):
        if name.startswith(("MESH_", "KAFKA_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in workload_environment(service, tmp_path).items():
        monkeypatch.setenv(name, value)
    config = MeshSettings()
    assert config.mode == "production"
    # notify's key-encryption-key check reads the key itself; the mount is in the manifest.
    check_start(config, service, service_needs=(web_tls_problem,) if service == "notify" else ())
    if service == "notify":
        assert str(config.notify_kek_path).endswith("/run/mesh/kek/kek")
