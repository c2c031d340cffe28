"""The access log's retention purge runs by itself in the referral service, with metrics."""

from __future__ import annotations

import urllib.request

from meshcli.supervisor import Stack, private_mesh_env, settings_from
from tests.integration.lifecycle.lifecycle_kit import wait_until


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_the_referral_service_purges_its_access_log_on_a_schedule(kafka_bootstrap, tmp_path):
    env = private_mesh_env(tmp_path, kafka_bootstrap, MESH_RETENTION_SWEEP_SECONDS="0.5")
    config = settings_from(env)
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    stack.start("referral")
    try:

        def runs() -> int:
            lines = [
                line
                for line in _metrics(config.referral_metrics_port).splitlines()
                if line.startswith("referralmesh_retention_runs_total")
                and 'referralmesh_retention_job="access_log"' in line
                and 'outcome="ok"' in line
            ]
            return int(float(lines[0].rsplit(" ", 1)[1])) if lines else 0

        assert wait_until(lambda: runs() >= 2, 120), (tmp_path / "logs" / "referral.log").read_text()
        assert "referralmesh_retention_removed_total" in _metrics(config.referral_metrics_port)
    finally:
        stack.stop_all()
