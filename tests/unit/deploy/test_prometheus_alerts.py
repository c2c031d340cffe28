"""The operators' alerting rules (deploy/prometheus/alerts.yaml): the k8s copy is the same file,
and every rule uses a metric the services export (the names the OpenTelemetry Prometheus
exporter gives the instruments in the code). promtool tests each rule's behaviour
(deploy/prometheus/alerts.test.yaml, `make prometheus-rules-check`)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
K8S_COPY = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
SOURCES = [*ROOT.glob("services/**/*.py"), *ROOT.glob("meshkernel/*.py")]


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _exported_names() -> set[str]:
    """Prometheus names of the instruments the code creates: dots to underscores, counters
    _total, a unit of seconds _seconds (checked against a real scrape by hand, see README)."""
    names = set()
    pattern = re.compile(
        r"create_(counter|observable_gauge|histogram|up_down_counter|gauge)\(\s*\"(referralmesh\.[a-z_.]+)\"(.*?)\)",
        re.S,
    )
    for source in SOURCES:
        for kind, name, rest in pattern.findall(source.read_text(encoding="utf-8")):
            base = name.replace(".", "_")
            if re.search(r'unit="s"', rest):
                base += "_seconds"
            names.add(base + ("_total" if kind == "counter" else ""))
    return names


def test_the_k8s_configmap_ships_the_same_rules():
    assert K8S_COPY.read_bytes() == RULES.read_bytes()


def test_every_rule_uses_metrics_the_services_export():
    exported = _exported_names()
    for rule in _rules():
        metrics_only = re.sub(r"\{[^}]*\}|by \([^)]*\)", "", rule["expr"])  # no label names
        used = set(re.findall(r"referralmesh_[a-z_]+", metrics_only))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


def test_the_operators_situations_each_have_a_rule_and_a_promtool_test():
    alerts = {rule["alert"] for rule in _rules()}
    assert alerts == {
        "MeshConsumerLagHigh",
        "MeshDeadLettersGrowing",
        "MeshOutboxBacklog",
        "MeshCoordinatorActionsUnpublished",
        "MeshEscalationNotAcknowledged",
        "MeshCertificateExpiresSoon",
    }
    tested = {
        check["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in case["alert_rule_test"]
        if check.get("exp_alerts")
    }
    assert tested == alerts
