"""The dashboard over HTTP: cookies and HSTS by mode, sessions required, sign-in throttled.

The dashboard app runs in-process on a real socket (aiohttp's test server) with a real SQLite
store; no broker is needed for what is tested here.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshcli.supervisor import free_port
from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from referralmesh.v1 import events_pb2
from services.notify.adapters import passwords
from services.notify.adapters.dashboard import Dashboard, LocalPasswords, dashboard_tls, start_http
from services.notify.adapters.store import NotifyStore
from services.notify.application import AlertDesk
from services.notify.domain.throttle import SignInThrottle, ThrottlePolicy

CHEAP = passwords.ScryptCost(n=2**4, r=8, p=1)
REGIONS = {"GM0518": "Haaglanden", "GM0344": "Utrecht"}
PASSWORD = "a-long-enough-password"


def _cookies(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, as sent (attributes included)."""
    return {header.split("=", 1)[0]: header for header in response.headers.getall("Set-Cookie", [])}


def _notification(store: NotifyStore, notification_id: str, region: str) -> None:
    event = events_pb2.NotificationEvent(
        notification_id=notification_id,
        responsible_region=region,
        audience=events_pb2.AGENCY,
        recipient="shelter-utrecht",
        template="t",
    )
    raw = envelopes.encode(
        envelopes.new_envelope(
            case_id=f"case-{notification_id}", producer="test", event_id=notification_id, notification=event
        )
    )
    store.record_notification(
        notification_id=notification_id,
        case_id=f"case-{notification_id}",
        audience="AGENCY",
        recipient="shelter-utrecht",
        template="t",
        language="nl",
        channel="none",
        envelope=raw,
    )


@pytest.fixture
def store(tmp_path):
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    for username, scope in (("coord-gm0518", "GM0518"), ("coord-national", "NATIONAL")):
        store.put_coordinator(username, passwords.hash_password(PASSWORD, cost=CHEAP), scope)
    store.put_coordinator("coord-demo", passwords.hash_password(PASSWORD, cost=CHEAP), "GM0518", demo=True)
    yield store
    store.close()


async def _client(store: NotifyStore, *, secure: bool, throttle: SignInThrottle | None = None) -> TestClient:
    dashboard = Dashboard(
        AlertDesk(store, REGIONS),
        store,
        LocalPasswords(store, allow_demo=not secure, cost=CHEAP),
        REGIONS,
        secure=secure,
        throttle=throttle,
    )
    client = TestClient(TestServer(dashboard.app()))
    await client.start_server()
    return client


async def _sign_in(client: TestClient, username: str, password: str = PASSWORD):
    return await client.post("/login", data={"username": username, "password": password}, allow_redirects=False)


async def test_outside_local_mode_the_session_cookie_is_secure_host_only_and_hsts_is_sent(store):
    client = await _client(store, secure=True)
    try:
        page = await client.get("/login")
        assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        response = await _sign_in(client, "coord-gm0518")
        assert response.status == 303
        assert "Strict-Transport-Security" in response.headers  # redirects carry it too
        cookie = _cookies(response)["__Host-mesh_session"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path", "samesite"} <= attributes and "domain" not in attributes
        assert "Path=/" in cookie and "SameSite=Strict" in cookie
        assert "mesh_session" not in {name for name in _cookies(response) if not name.startswith("__Host-")}
        assert "Secure" in _cookies(response)["__Host-mesh_lang"]
        # The cookie under the plain name is not a session outside local mode.
        token = cookie.split(";")[0].split("=", 1)[1]
        assert (await client.get("/notifications", cookies={"mesh_session": token})).status == 401
        assert (await client.get("/notifications", cookies={"__Host-mesh_session": token})).status == 200
        # Demo accounts do not sign in outside local mode.
        assert (await _sign_in(client, "coord-demo")).status == 401
    finally:
        await client.close()


async def test_in_local_mode_cookies_work_over_plain_http_and_no_hsts_is_sent(store):
    client = await _client(store, secure=False)
    try:
        response = await _sign_in(client, "coord-demo")
        assert response.status == 303
        cookie = _cookies(response)["mesh_session"]
        assert "Secure" not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Strict-Transport-Security" not in response.headers
        assert "Strict-Transport-Security" not in (await client.get("/health")).headers
    finally:
        await client.close()


async def test_notifications_need_a_session_and_show_only_the_coordinators_scope(store):
    _notification(store, "n-haaglanden", "GM0518")
    _notification(store, "n-utrecht", "GM0344")
    client = await _client(store, secure=False)
    try:
        assert (await client.get("/notifications")).status == 401
        assert (await client.get("/notifications", cookies={"mesh_session": "made-up"})).status == 401
        listed = {}
        for username in ("coord-gm0518", "coord-national"):
            token = _cookies(await _sign_in(client, username))["mesh_session"].split(";")[0].split("=", 1)[1]
            response = await client.get("/notifications", cookies={"mesh_session": token})
            assert response.status == 200
            listed[username] = {n["notification_id"] for n in json.loads(await response.text())["notifications"]}
        assert listed == {"coord-gm0518": {"n-haaglanden"}, "coord-national": {"n-haaglanden", "n-utrecht"}}
        assert [e["action"] for e in store.access_entries("*")].count("VIEW_NOTIFICATIONS") == 2
    finally:
        await client.close()


async def test_a_disabled_account_loses_its_session_at_once(store):
    client = await _client(store, secure=False)
    try:
        token = _cookies(await _sign_in(client, "coord-gm0518"))["mesh_session"].split(";")[0].split("=", 1)[1]
        assert (await client.get("/notifications", cookies={"mesh_session": token})).status == 200
        store.set_disabled("coord-gm0518", True)
        assert (await client.get("/notifications", cookies={"mesh_session": token})).status == 401
        dashboard = await client.get("/dashboard", cookies={"mesh_session": token}, allow_redirects=False)
        assert dashboard.status == 303 and dashboard.headers["Location"] == "/login"
    finally:
        await client.close()


async def test_repeated_failures_lock_the_account_even_for_the_right_password(store):
    policy = ThrottlePolicy(max_failures=3, window=600, lockout=60, max_lockout=600)
    client = await _client(
        store, secure=False, throttle=SignInThrottle(account=policy, address=ThrottlePolicy(100, 600, 60, 600))
    )
    try:
        for _ in range(3):
            assert (await _sign_in(client, "coord-gm0518", "wrong")).status == 401
        locked = await _sign_in(client, "coord-gm0518")
        assert locked.status == 429 and 0 < int(locked.headers["Retry-After"]) <= 60
        assert "mesh_session" not in _cookies(locked)
        assert (await _sign_in(client, "coord-national")).status == 303  # other accounts sign in
        results = [e["result"] for e in store.access_entries("-") if e["action"] == "SIGN_IN"]
        assert results.count("refused:throttled") == 1 and results.count("refused:credentials") == 3
    finally:
        await client.close()


def _self_signed(tmp_path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "web.crt", tmp_path / "web.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_the_dashboard_serves_https_with_its_own_certificate_and_the_secure_cookie_works(store, tmp_path):
    cert, key = _self_signed(tmp_path)
    config = MeshSettings(mode="production", notify_web_tls_cert=cert, notify_web_tls_key=key)
    server_tls = dashboard_tls(config)
    assert server_tls is not None and server_tls.minimum_version == ssl.TLSVersion.TLSv1_2
    dashboard = Dashboard(AlertDesk(store, REGIONS), store, LocalPasswords(store, cost=CHEAP), REGIONS, secure=True)
    port = free_port()
    runner = await start_http(dashboard.app(), "127.0.0.1", port, server_tls)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with aiohttp.ClientSession(
            base_url=f"https://127.0.0.1:{port}",
            connector=aiohttp.TCPConnector(ssl=trust),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        ) as http:
            async with http.post("/login", data={"username": "coord-gm0518", "password": PASSWORD}) as response:
                # The browser-like jar keeps the __Host- Secure cookie over HTTPS and follows to the dashboard.
                assert response.status == 200 and str(response.url).endswith("/dashboard")
                assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            async with http.get("/notifications") as response:
                assert response.status == 200
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                await plain.get(f"http://127.0.0.1:{port}/health")  # no plaintext on the TLS port
    finally:
        await runner.cleanup()


async def test_behind_the_tls_proxy_throttling_counts_the_address_the_proxy_saw(store):
    policy = ThrottlePolicy(max_failures=2, window=600, lockout=60, max_lockout=600)
    dashboard = Dashboard(
        AlertDesk(store, REGIONS),
        store,
        LocalPasswords(store, cost=CHEAP),
        REGIONS,
        secure=True,
        throttle=SignInThrottle(account=ThrottlePolicy(100, 600, 60, 600), address=policy),
        behind_proxy=True,
    )
    client = TestClient(TestServer(dashboard.app()))
    await client.start_server()
    try:

        async def attempt(forwarded: str, password: str = "wrong"):
            return await client.post(
                "/login",
                data={"username": "coord-gm0518", "password": password},
                headers={"X-Forwarded-For": forwarded},
                allow_redirects=False,
            )

        # The client cannot pick its address: only the entry the proxy appended (the last) counts.
        assert (await attempt("10.9.9.1, 192.0.2.7")).status == 401
        assert (await attempt("10.9.9.2, 192.0.2.7")).status == 401
        assert (await attempt("10.9.9.3, 192.0.2.7", PASSWORD)).status == 429
        # Another client behind the same proxy is not locked out.
        assert (await attempt("192.0.2.8", PASSWORD)).status == 303
    finally:
        await client.close()
