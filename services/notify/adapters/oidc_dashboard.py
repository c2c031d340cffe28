"""The dashboard's sign-in at the organisation's identity provider: GET /login/oidc sends the
browser to the provider, GET /login/oidc/callback finishes the flow (adapters/oidc.py), decides
the coordinator's scope from the ID token (domain/oidc_scope.py) and starts the same session as a
local sign-in.

Such a coordinator is an account in the notify store named `oidc:<subject>`, created or updated
(scope) at each sign-in, with no password (it never signs in at /login); `mesh coordinator
disable oidc:<subject>` stops it like any account. Only the subject is kept and logged: no
name, e-mail address or other claim.
"""

from __future__ import annotations

import hashlib
import logging

from aiohttp import web

from meshkernel.config import OIDC_CALLBACK_PATH, MeshSettings
from services.notify.adapters.dashboard import SECURE_PREFIX, Dashboard
from services.notify.adapters.oidc import (
    PENDING_SECONDS,
    OidcRefused,
    OidcSignIn,
    PendingSignIn,
    client_settings,
    load_scope_mapping,
)
from services.notify.adapters.ui_text import UI_LANGUAGES
from services.notify.domain.alerts import NATIONAL, Coordinator
from services.notify.domain.oidc_scope import ScopeMapping, ScopeReason, decide_scope

log = logging.getLogger(__name__)

PENDING_COOKIE = "mesh_oidc"
USERNAME_PREFIX = "oidc:"
NO_PASSWORD = "oidc"  # not a scrypt hash: the account cannot sign in with a password
USERNAME_LENGTH = 80  # the coordinators table's column

TEXT = {
    "nl": {
        "sign_in_with": "Inloggen met {label}",
        "sign_in_with_organisation": "Inloggen met het account van uw organisatie",
        "back": "Terug naar inloggen",
        "onwards": "U bent ingelogd. Verder naar het dashboard",
        "no_scope": "U bent ingelogd, maar uw account heeft geen regio voor dit dashboard. "
        "Vraag de beheerder van uw organisatie om u een regio te geven.",
        "ambiguous": "Uw account hoort bij meer dan één regio. "
        "Vraag de beheerder van uw organisatie om er één te kiezen.",
        "disabled": "Dit account mag niet inloggen. Vraag het de beheerder van het dashboard.",
        "state": "Deze inlogpoging kon niet worden gecontroleerd en is gestopt. Begin opnieuw.",
        "provider": "Inloggen bij uw organisatie is niet gelukt. Probeer het opnieuw.",
        "unavailable": "De inlogdienst van uw organisatie was niet bereikbaar of gaf een antwoord dat we niet "
        "kunnen vertrouwen. Probeer het later opnieuw.",
    },
    "en": {
        "sign_in_with": "Sign in with {label}",
        "sign_in_with_organisation": "Sign in with your organisation's account",
        "back": "Back to sign-in",
        "onwards": "You are signed in. On to the dashboard",
        "no_scope": "You are signed in, but your account has no region for this dashboard. "
        "Ask your organisation's administrator to give you one.",
        "ambiguous": "Your account belongs to more than one region. "
        "Ask your organisation's administrator to choose one.",
        "disabled": "This account may not sign in. Ask the dashboard's administrator.",
        "state": "This sign-in could not be checked and was stopped. Please start again.",
        "provider": "Signing in at your organisation did not work. Please try again.",
        "unavailable": "Your organisation's sign-in service could not be reached or gave an answer we cannot "
        "trust. Please try again later.",
    },
}
# Why a sign-in was refused -> (the text shown, HTTP status).
REFUSALS = {
    "state": ("state", 400),
    "provider": ("provider", 401),
    "issuer": ("unavailable", 502),
    "discovery": ("unavailable", 502),
    "jwks": ("unavailable", 502),
    "token": ("unavailable", 502),
    "id_token": ("unavailable", 502),
    "no_scope": ("no_scope", 403),
    "ambiguous": ("ambiguous", 403),
    "disabled": ("disabled", 403),
}


def account_name(subject: str) -> str:
    """`oidc:<subject>`; a subject too long for the column, or not plain printable ASCII, by its hash."""
    name = USERNAME_PREFIX + subject
    if len(name) <= USERNAME_LENGTH and subject.isascii() and subject.isprintable() and " " not in subject:
        return name
    return USERNAME_PREFIX + "sha256-" + hashlib.sha256(subject.encode()).hexdigest()[:48]


class OidcRoutes:
    def __init__(self, dashboard: Dashboard, sign_in: OidcSignIn, mapping: ScopeMapping):
        self.dashboard = dashboard
        self.sign_in = sign_in
        self.mapping = mapping
        self.pending_cookie = (SECURE_PREFIX if dashboard.secure else "") + PENDING_COOKIE
        self.link_texts = {
            lang: (
                TEXT[lang]["sign_in_with"].format(label=sign_in.label)
                if sign_in.label
                else TEXT[lang]["sign_in_with_organisation"]
            )
            for lang in UI_LANGUAGES
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/login/oidc", self.start)
        app.router.add_get(OIDC_CALLBACK_PATH, self.callback)

    async def start(self, request: web.Request) -> web.Response:
        lang = self.dashboard._lang(request)
        try:
            url, pending = await self.sign_in.begin(lang)
        except OidcRefused as refused:
            return await self._refused(refused.code, lang, actor="-")
        response = web.HTTPSeeOther(url)
        # Lax, not Strict: the browser must send it on the provider's redirect back to us.
        response.set_cookie(
            self.pending_cookie,
            pending.to_cookie(),
            httponly=True,
            samesite="Lax",
            path="/",
            max_age=PENDING_SECONDS,
            secure=self.dashboard.secure,
        )
        raise response

    async def callback(self, request: web.Request) -> web.Response:
        pending = PendingSignIn.from_cookie(request.cookies.get(self.pending_cookie))
        lang = pending.lang if pending and pending.lang in UI_LANGUAGES else self.dashboard._lang(request)
        try:
            claims = await self.sign_in.finish(pending, dict(request.query))
        except OidcRefused as refused:
            log.info("identity provider sign-in refused", extra={"reason": refused.code})
            return await self._refused(refused.code, lang, actor="-")
        username = account_name(str(claims["sub"]))
        decision = decide_scope(claims, self.mapping, self.dashboard.regions)
        if decision.scope is None:
            code = "ambiguous" if decision.reason is ScopeReason.AMBIGUOUS else "no_scope"
            return await self._refused(code, lang, actor=username)
        existing = await self.dashboard.store.aio.coordinator(username)
        if existing is not None and (existing["disabled"] or existing["password_hash"] != NO_PASSWORD):
            return await self._refused("disabled", lang, actor=username)
        display = (
            "National coordinator"
            if decision.scope == NATIONAL
            else f"Coordinator {self.dashboard.regions.get(decision.scope, decision.scope)}"
        )
        await self.dashboard.store.aio.put_coordinator(
            username, NO_PASSWORD, decision.scope, display_name=display, organisation=decision.scope
        )
        # The provider's redirect to us is a cross-site navigation, and so would be our redirect
        # onwards: the browser would not send the SameSite=Strict session cookie with it. A page
        # of our own that moves on to the dashboard makes that next request a same-site one.
        page = self.dashboard._html(
            self.dashboard._render("oidc_signed_in.html.j2", lang, onwards=TEXT[lang]["onwards"]), lang
        )
        page.headers["Refresh"] = "0; url=/dashboard"
        await self.dashboard.start_session(Coordinator(username, decision.scope, display), lang, page)
        self._forget_pending(page)
        return page

    async def _refused(self, code: str, lang: str, *, actor: str) -> web.Response:
        text_key, status = REFUSALS.get(code, ("unavailable", 502))
        await self.dashboard.store.aio.log_access(
            actor=actor, action="SIGN_IN", case_id="-", why="dashboard", channel="web", result=f"refused:oidc_{code}"
        )
        body = self.dashboard._render(
            "oidc_refused.html.j2", lang, message=TEXT[lang][text_key], back=TEXT[lang]["back"], reason=code
        )
        response = self.dashboard._html(body, status=status)
        self._forget_pending(response)
        return response

    def _forget_pending(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.pending_cookie, path="/", secure=self.dashboard.secure, httponly=True, samesite="Lax")


def offer_identity_provider(config: MeshSettings, dashboard: Dashboard) -> OidcRoutes | None:
    """Adds sign-in at the configured identity provider to the dashboard; None when none is configured."""
    settings = client_settings(config)
    if settings is None:
        return None
    routes = OidcRoutes(dashboard, OidcSignIn(settings), load_scope_mapping(config, dashboard.regions))
    dashboard.offer_identity_provider(routes)
    log.info("dashboard offers sign-in at an identity provider", extra={"issuer": settings.issuer})
    return routes
