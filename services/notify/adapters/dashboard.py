"""The coordinator dashboard and the service's HTTP endpoints (aiohttp, in the Faust worker).

Routes: /health, /notifications (ids and codes only), /login, /logout, /dashboard (the live
list), /dashboard/alerts (the list as an HTML fragment), /dashboard/events (server-sent
events: "alerts" whenever something in the list may have changed), and POST
/dashboard/alerts/{escalation_id}/{acknowledge|take|reassign|resolve}.

Sign-in goes through an `Authenticator` (the embedded default checks the local scrypt password
store); with an identity provider configured, adapters/oidc_dashboard.py adds /login/oidc and
its callback and ends in the same `start_session`. Failed sign-ins are throttled
per client address and per account (domain/throttle.py). Sessions are random tokens in an
HttpOnly, SameSite=Strict cookie, stored hashed; outside MESH_MODE=local the cookie is `Secure`
with the `__Host-` prefix and every response carries HSTS. Forms carry a CSRF token derived from
the session. Pages send a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar, cast

import jinja2
from aiohttp import web

from meshkernel.config import MeshSettings
from referralmesh.v1 import events_pb2
from services.notify.adapters import passwords
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.case_view import CaseView
from services.notify.adapters.insight import InsightPage, rule_label
from services.notify.adapters.store import NotifyStore
from services.notify.adapters.ui_text import TEXT, UI_LANGUAGES
from services.notify.application import AlertDesk
from services.notify.domain import alerts as domain
from services.notify.domain.alerts import AlertError, Coordinator
from services.notify.domain.throttle import SignInThrottle, Throttle

log = logging.getLogger(__name__)
AnyResponse = TypeVar("AnyResponse", bound=web.StreamResponse)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "dashboard"
STATIC = Path(__file__).resolve().parent.parent / "static"
SESSION_COOKIE = "mesh_session"
LANG_COOKIE = "mesh_lang"
# Outside local mode: only over HTTPS, only for this host, path / (RFC 6265bis "__Host-").
SECURE_PREFIX = "__Host-"
HSTS = "max-age=31536000; includeSubDomains"
HASHING_AT_ONCE = 2  # scrypt at OWASP's cost takes 128 MiB per check
ACTIONS = ("acknowledge", "take", "reassign", "resolve")
SSE_KEEPALIVE_SECONDS = 15.0
SSE_POLL_SECONDS = 1.0  # changes made by another replica show up within this time
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str) -> Coordinator | None: ...


class IdentityProviderRoutes(Protocol):
    """Sign-in at an identity provider: its routes, and the sign-in page's link text per language."""

    link_texts: dict[str, str]

    def add_routes(self, app: web.Application) -> None: ...


class LocalPasswords:
    """The embedded default: usernames with scrypt hashes in the notify store.

    Disabled accounts, and demo accounts outside local mode, do not sign in. A hash made at an
    older cost is replaced by one at the current cost when its password is given.
    """

    def __init__(
        self, store: NotifyStore, *, allow_demo: bool = False, cost: passwords.ScryptCost = passwords.OWASP_COST
    ):
        self.store = store
        self.allow_demo = allow_demo
        self.cost = cost

    def authenticate(self, username: str, password: str) -> Coordinator | None:
        row = self.store.coordinator(username)
        usable = row is not None and not row["disabled"] and (self.allow_demo or not row["demo"])
        if not usable:
            passwords.check_password(password, passwords.dummy_hash(self.cost))  # same time either way
            return None
        assert row is not None  # usable implies a row
        if not passwords.check_password(password, row["password_hash"]):
            return None
        if passwords.needs_rehash(row["password_hash"], self.cost):
            self.store.set_password_hash(row["username"], passwords.hash_password(password, cost=self.cost))
        return Coordinator(row["username"], row["scope"], row["display_name"])


def security_headers(*, hsts: bool):
    headers = dict(SECURITY_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {}))

    @web.middleware
    async def add_headers(request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as answer:  # redirects and refusals carry the headers too
            for name, value in headers.items():
                answer.headers.setdefault(name, value)
            raise
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    return add_headers


class Dashboard:
    def __init__(
        self,
        desk: AlertDesk,
        store: NotifyStore,
        authenticator: Authenticator,
        regions: dict[str, str],
        *,
        session_hours: float = 8.0,
        service: str = "notify",
        secure: bool = True,
        throttle: Throttle | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        behind_proxy: bool = False,
    ):
        self.desk = desk
        self.store = store
        self.auth = authenticator
        self.regions = regions
        self.session_seconds = session_hours * 3600
        self.service = service
        # secure: HTTPS only (outside MESH_MODE=local): Secure __Host- cookies and HSTS.
        self.secure = secure
        self.session_cookie = (SECURE_PREFIX if secure else "") + SESSION_COOKIE
        self.lang_cookie = (SECURE_PREFIX if secure else "") + LANG_COOKIE
        self.throttle: Throttle = throttle or SignInThrottle()
        # Behind a TLS proxy every request comes from the proxy: throttle on the address it saw.
        self.behind_proxy = behind_proxy
        self.monotonic = monotonic
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self.closing = False  # set at shutdown: live streams end at once
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined
        )
        facts = CaseFacts(store.engine)
        self.cases = CaseView(self, facts)
        self.insight = InsightPage(self, facts)
        self.identity_provider: IdentityProviderRoutes | None = None
        self.env.globals["identity_provider"] = None

    def offer_identity_provider(self, routes: IdentityProviderRoutes) -> None:
        """Sign-in at the organisation's identity provider beside local accounts (adapters/oidc_dashboard.py)."""
        self.identity_provider = routes
        self.env.globals["identity_provider"] = routes.link_texts

    def app(self) -> web.Application:
        app = web.Application(middlewares=[security_headers(hsts=self.secure)], client_max_size=64 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/notifications", self.notifications)
        app.router.add_get("/", self.root)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/alerts", self.fragment)
        app.router.add_get("/dashboard/events", self.events)
        app.router.add_post("/dashboard/alerts/{escalation_id}/{action}", self.act)
        self.cases.add_routes(app)
        self.insight.add_routes(app)
        app.router.add_static("/static", str(STATIC), show_index=False)
        if self.identity_provider is not None:
            self.identity_provider.add_routes(app)
        return app

    # --- plumbing -----------------------------------------------------------------------
    def _lang(self, request: web.Request) -> str:
        """Dutch unless English was chosen (?lang=en, kept in a cookie): the browser's language
        setting is not a choice, and the coordinators' working language is Dutch."""
        wanted = request.query.get("lang") or request.cookies.get(self.lang_cookie)
        return wanted if wanted in UI_LANGUAGES else "nl"

    async def _user(self, request: web.Request) -> tuple[Coordinator, str] | None:
        token = request.cookies.get(self.session_cookie)
        if not token:
            return None
        username = await self.store.aio.session_user(passwords.token_hash(token))
        row = await self.store.aio.coordinator(username) if username else None
        if row is None or row["disabled"]:
            return None
        return Coordinator(row["username"], row["scope"], row["display_name"]), token

    def _client_address(self, request: web.Request) -> str:
        """The address sign-in throttling counts: the peer, or behind the proxy (MESH_NOTIFY_WEB_TLS_PROXY)
        the last X-Forwarded-For entry, the one the proxy itself appended (earlier ones are the client's word)."""
        forwarded = request.headers.getall("X-Forwarded-For", []) if self.behind_proxy else []
        hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
        return hops[-1] if hops else (request.remote or "-")

    async def _live_cursor(self) -> int:
        """Grows whenever an alert changes or a case's timeline gains a step (both only grow)."""
        return await self.store.aio.run(lambda: self.store.last_cursor() + self.cases.facts.timeline_size())

    async def _throttle(self, method: str, *args):
        """The throttle's call: in memory at once, or a shared (database) throttle's off the loop."""
        call = getattr(self.throttle, method)
        if getattr(self.throttle, "blocking", False):
            return await self.store.aio.run(call, *args)
        return call(*args)

    @staticmethod
    def _csrf(token: str) -> str:
        return hashlib.sha256(b"csrf|" + token.encode()).hexdigest()[:32]

    def _render(self, name: str, lang: str, **context) -> str:
        text = TEXT[lang]
        now = datetime.now(UTC)

        def age(alert) -> str:  # an alert or a case card
            seconds = int(alert.age_seconds(now))
            days, rest = divmod(seconds, 86400)
            hours, rest = divmod(rest, 3600)
            minutes = rest // 60
            if days:
                return f"{days} {text['days']} {hours} {text['hours']}"
            if hours:
                return f"{hours} {text['hours']} {minutes} {text['minutes']}"
            return f"{minutes} {text['minutes']}"

        def when(moment: datetime) -> str:
            return moment.astimezone().strftime("%d-%m-%Y %H:%M")

        return self.env.get_template(name).render(
            t=text,
            lang=lang,
            age=age,
            when=when,
            region_name=lambda code: self.regions.get(code, code),
            rule_label=lambda rule: rule_label(text, rule),
            regions=sorted(self.regions.items(), key=lambda kv: kv[1]),
            reasons=domain.REASSIGN_REASONS,
            outcomes=domain.OUTCOMES,
            **context,
        )

    def _html(self, body: str, lang: str | None = None, status: int = 200) -> web.Response:
        response = web.Response(text=body, content_type="text/html", charset="utf-8", status=status)
        if lang:
            self._set_cookie(response, self.lang_cookie, lang, 365 * 86400)
        return response

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, httponly=True, samesite="Strict", path="/", max_age=max_age, secure=self.secure
        )

    # --- pages --------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def notifications(self, request: web.Request) -> web.Response:
        """The latest notifications of the coordinator's scope (ids and codes); needs a session."""
        current = await self._user(request)
        if current is None:
            raise web.HTTPUnauthorized()
        who = current[0]
        recent = [d for d in await self.store.aio.deliveries() if who.national or _region_of(d) == who.scope][-200:]
        await self.store.aio.log_access(
            actor=who.username,
            action="VIEW_NOTIFICATIONS",
            case_id="*",
            why="coordination",
            channel="web",
            organisation=who.scope,
        )
        return web.json_response(
            {
                "notifications": [
                    {
                        "notification_id": d.notification_id,
                        "case_id": d.case_id,
                        "audience": d.audience,
                        "recipient": d.recipient if d.audience != "CLIENT" else "client",
                        "template": d.template,
                        "channel": d.channel,
                        "status": d.status,
                        "attempts": d.attempts,
                    }
                    for d in reversed(recent)
                ]
            }
        )

    async def login_page(self, request: web.Request) -> web.Response:
        lang = self._lang(request)
        if await self._user(request):
            raise web.HTTPFound("/dashboard")
        return self._html(self._render("login.html.j2", lang, failed=""), lang)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        lang = cast(str, form.get("lang")) if form.get("lang") in UI_LANGUAGES else self._lang(request)
        username = str(form.get("username", ""))[:80]
        address = self._client_address(request)
        wait = await self._throttle("retry_after", address, username, self.monotonic())
        if wait > 0:
            await self.store.aio.log_access(
                actor=username or "-",
                action="SIGN_IN",
                case_id="-",
                why="dashboard",
                channel="web",
                result="refused:throttled",
            )
            response = self._html(self._render("login.html.j2", lang, failed="sign_in_throttled"), lang, status=429)
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        async with self._hashing:
            who = await asyncio.to_thread(self.auth.authenticate, username, str(form.get("password", ""))[:200])
        if who is None:
            await self._throttle("failed", address, username, self.monotonic())
            await self.store.aio.log_access(
                actor=username or "-",
                action="SIGN_IN",
                case_id="-",
                why="dashboard",
                channel="web",
                result="refused:credentials",
            )
            return self._html(self._render("login.html.j2", lang, failed="sign_in_failed"), lang, status=401)
        await self._throttle("succeeded", username)
        raise await self.start_session(who, lang, web.HTTPSeeOther("/dashboard"))

    async def start_session(self, who: Coordinator, lang: str, response: AnyResponse) -> AnyResponse:
        """A new session for a signed-in coordinator (any sign-in), access-logged; `response` sets its cookie."""
        token = secrets.token_urlsafe(32)
        await self.store.aio.add_session(passwords.token_hash(token), who.username, time.time() + self.session_seconds)
        await self.store.aio.log_access(
            actor=who.username, action="SIGN_IN", case_id="-", why="dashboard", channel="web", organisation=who.scope
        )
        self._set_cookie(response, self.session_cookie, token, int(self.session_seconds))
        self._set_cookie(response, self.lang_cookie, lang, 365 * 86400)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        current = await self._user(request)
        form = await request.post()
        if current and hmac.compare_digest(str(form.get("csrf", "")), self._csrf(current[1])):
            await self.store.aio.drop_session(passwords.token_hash(current[1]))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="Strict")
        raise response

    async def page(self, request: web.Request) -> web.Response:
        current = await self._user(request)
        if current is None:
            raise web.HTTPSeeOther("/login")
        who, token = current
        lang = self._lang(request)
        cursor = await self._live_cursor()
        await self.store.aio.log_access(
            actor=who.username,
            action="VIEW_ALERTS",
            case_id="*",
            why="coordination",
            channel="web",
            organisation=who.scope,
        )
        flash_kind = request.query.get("result", "")
        flash = {"done": TEXT[lang]["done"], "refused": TEXT[lang]["refused"]}.get(flash_kind, "")
        scope_name = TEXT[lang]["national"] if who.national else self.regions.get(who.scope, who.scope)
        return self._html(
            self._render(
                "dashboard.html.j2",
                lang,
                user=who,
                csrf=self._csrf(token),
                cursor=cursor,
                scope_name=scope_name,
                flash=flash,
                flash_kind=flash_kind,
                **(await self.cases.context(request, who)),
            ),
            lang,
        )

    async def fragment(self, request: web.Request) -> web.Response:
        current = await self._user(request)
        if current is None:
            raise web.HTTPUnauthorized()
        who, token = current
        return self._html(
            self._render(
                "cases.html.j2",
                self._lang(request),
                user=who,
                csrf=self._csrf(token),
                **(await self.cases.context(request, who)),
            )
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        current = await self._user(request)
        if current is None:
            raise web.HTTPUnauthorized()
        try:
            cursor = int(request.query.get("cursor", "0"))
        except ValueError:
            cursor = 0
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        last_write = time.monotonic()
        try:
            while not self.closing:
                if request.transport is None or request.transport.is_closing():
                    break  # the browser went away
                latest = await self._live_cursor()
                if latest > cursor:
                    cursor = latest
                    await response.write(f"event: alerts\nid: {cursor}\ndata: {cursor}\n\n".encode())
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > SSE_KEEPALIVE_SECONDS:
                    await response.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
                if await self._user(request) is None:  # signed out or expired: stop streaming
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.desk.changed.wait(), SSE_POLL_SECONDS)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def act(self, request: web.Request) -> web.Response:
        current = await self._user(request)
        if current is None:
            raise web.HTTPSeeOther("/login")
        who, token = current
        form = await request.post()
        if not hmac.compare_digest(str(form.get("csrf", "")), self._csrf(token)):
            raise web.HTTPForbidden(text="invalid form token; reload the page")
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise web.HTTPNotFound()
        try:
            await self.desk.act(
                who,
                request.match_info["escalation_id"],
                action,
                channel="web",
                code=str(form.get("code", ""))[:40],
                region=str(form.get("region", ""))[:16],
            )
            result = "done"
        except AlertError:
            result = "refused"
        raise web.HTTPSeeOther(f"/dashboard?result={result}#alert-{request.match_info['escalation_id']}")


def dashboard_tls(config: MeshSettings) -> ssl.SSLContext | None:
    """HTTPS for the dashboard when a certificate is configured (TLS 1.2 or newer)."""
    if not (config.notify_web_tls_cert and config.notify_web_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.notify_web_tls_cert, config.notify_web_tls_key)
    return context


def web_tls_problem(config: MeshSettings, service: str) -> str | None:
    """Outside local mode the dashboard is HTTPS only: its own certificate, or a TLS proxy."""
    if service != "notify" or config.local_mode or config.notify_web_tls_proxy:
        return None
    for setting, value in (
        ("MESH_NOTIFY_WEB_TLS_CERT", config.notify_web_tls_cert),
        ("MESH_NOTIFY_WEB_TLS_KEY", config.notify_web_tls_key),
    ):
        if not value:
            return (
                f"{setting} is not set; production mode serves the dashboard over TLS only "
                "(or set MESH_NOTIFY_WEB_TLS_PROXY=true when a proxy in front ends TLS)"
            )
        if not Path(value).exists():
            return f"{setting}={value}: no such file"
    return None


def _region_of(delivery) -> str:
    try:
        return events_pb2.EventEnvelope.FromString(delivery.envelope).notification.responsible_region
    except Exception:  # an unreadable record belongs to no region
        return ""


async def start_http(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)  # no access log: URLs carry case ids
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
