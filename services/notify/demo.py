"""For `make run`: where the dashboard is and how a demo coordinator signs in."""

from __future__ import annotations

from dataclasses import dataclass

from meshkernel.config import MeshSettings, settings
from services.notify.adapters import passwords
from services.notify.paths import NotifyPaths


@dataclass(frozen=True)
class DashboardLogin:
    url: str
    username: str
    password: str
    national_username: str


def dashboard_login(config: MeshSettings | None = None, region: str = "GM0518") -> DashboardLogin:
    """The dashboard address and a demo login (region coordinator of `region`, and the national one).

    The password is MESH_NOTIFY_DEMO_PASSWORD, or the random one the notify service wrote to
    its state folder at first start (call this after the service started, or it creates it).
    """
    config = config or settings()
    password = passwords.demo_password(NotifyPaths.of(config).demo_password_file, config.notify_demo_password)
    return DashboardLogin(
        url=f"http://127.0.0.1:{config.notify_web_port}/dashboard",
        username=f"coord-{region.lower()}",
        password=password,
        national_username=passwords.NATIONAL_USERNAME,
    )


def describe_dashboard(config: MeshSettings | None = None, region: str = "GM0518") -> str:
    login = dashboard_login(config, region)
    insight = login.url.removesuffix("/dashboard") + "/insight"
    return (
        f"coordinator case view: {login.url}  (sign in as {login.username} or {login.national_username}, "
        f"password {login.password})\n    insight page (charts per region): {insight}"
    )


def client_outbox_path(config: MeshSettings | None = None):
    """The embedded client channel's outbox file (JSON lines, addresses masked)."""
    return NotifyPaths.of(config or settings()).client_outbox
