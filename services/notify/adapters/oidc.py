"""OpenID Connect sign-in for the coordinator dashboard: the authorisation code flow with PKCE.

Authlib does the protocol (authorisation URL with an S256 code challenge, the token request with
the code verifier and client authentication); joserfc checks the ID token's signature against
the provider's JWKS from discovery, and Authlib's `CodeIDToken` its claims (issuer, audience,
expiry, issued-at, nonce, authorised party, access-token hash). Nothing here parses a JWT by hand.

The flow's secrets (state, nonce, code verifier) travel in a short-lived HttpOnly cookie of the
browser that started the flow (`PendingSignIn`), so any replica can finish it; the state in the
callback must equal the one in that cookie, and the nonce in the ID token the one in it.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from meshkernel.config import MeshSettings, oidc_settings_problem
from services.notify.domain.oidc_scope import ScopeMapping, check_mapping

log = logging.getLogger(__name__)

# Asymmetric signatures only: never "none", never HMAC with the client secret.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
PENDING_SECONDS = 600  # a sign-in at the provider must finish within this time
CLOCK_LEEWAY_SECONDS = 60
METADATA_SECONDS = 3600  # discovery and keys are fetched again after this (key rotation)


class OidcRefused(Exception):
    """A sign-in that must not go on; `code` says why (logged, never the token or claims)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


@dataclass(frozen=True)
class OidcClientSettings:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str
    scopes: str = "openid"
    label: str = ""
    require_https: bool = True


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    nonce: str
    code_verifier: str
    lang: str
    started_at: float

    def to_cookie(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(asdict(self)).encode()).decode()

    @classmethod
    def from_cookie(cls, value: str | None) -> PendingSignIn | None:
        if not value:
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(value.encode()))
            pending = cls(**{name: fields[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None
        if not all(isinstance(getattr(pending, name), str) for name in ("state", "nonce", "code_verifier", "lang")):
            return None
        return pending if isinstance(pending.started_at, int | float) else None

    def expired(self, now: float) -> bool:
        return not (0 <= now - self.started_at <= PENDING_SECONDS)


def client_settings(config: MeshSettings) -> OidcClientSettings | None:
    """The client settings, with the secret read from its file; None when OIDC is not configured."""
    if not config.oidc_enabled:
        return None
    problem = oidc_settings_problem(config)
    if problem:
        raise ValueError(problem)
    assert config.notify_oidc_client_secret_file is not None  # oidc_settings_problem checked completeness
    secret = Path(config.notify_oidc_client_secret_file).read_text().strip()
    if not secret:
        raise ValueError(f"MESH_NOTIFY_OIDC_CLIENT_SECRET_FILE={config.notify_oidc_client_secret_file} is empty")
    return OidcClientSettings(
        issuer=str(config.notify_oidc_issuer),
        client_id=str(config.notify_oidc_client_id),
        client_secret=secret,
        redirect_url=str(config.notify_oidc_redirect_url),
        scopes=config.notify_oidc_scopes,
        label=config.notify_oidc_label,
        require_https=not config.local_mode,
    )


def load_scope_mapping(config: MeshSettings, regions: Mapping[str, str]) -> ScopeMapping:
    """The claim name and the operator's mapping file (YAML: `subjects` and `claim_values`, each
    a table of name -> region code or NATIONAL), checked against the region policy."""
    subjects: dict[str, str] = {}
    claim_values: dict[str, str] = {}
    if config.notify_oidc_mapping_path is not None:
        raw = yaml.safe_load(Path(config.notify_oidc_mapping_path).read_text()) or {}
        if not isinstance(raw, dict) or set(raw) - {"subjects", "claim_values"}:
            raise ValueError(f"{config.notify_oidc_mapping_path}: expected only `subjects` and `claim_values` tables")
        for name, target in (("subjects", subjects), ("claim_values", claim_values)):
            table = raw.get(name) or {}
            if not isinstance(table, dict):
                raise ValueError(f"{config.notify_oidc_mapping_path}: `{name}` must be a table of name: scope")
            target.update({str(key): str(value).strip().upper() for key, value in table.items()})
    mapping = ScopeMapping(claim=config.notify_oidc_scope_claim.strip(), subjects=subjects, claim_values=claim_values)
    check_mapping(mapping, regions)
    return mapping


def oidc_problem(config: MeshSettings, service: str) -> str | None:
    """At start: the settings are complete and safe, the secret file readable and not empty."""
    if service != "notify":
        return None
    problem = oidc_settings_problem(config)
    if problem or not config.oidc_enabled:
        return problem
    try:
        client_settings(config)
    except (OSError, ValueError) as error:
        return f"OpenID Connect sign-in: {error}"
    return None


class OidcSignIn:
    """One relying party (the dashboard) of one provider."""

    def __init__(
        self,
        settings: OidcClientSettings,
        *,
        timeout: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock=time.time,
    ):
        self.settings = settings
        self.timeout = timeout
        self.transport = transport
        self.clock = clock
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] | None = None
        self._fetched_at = 0.0

    @property
    def label(self) -> str:
        return self.settings.label

    def _http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(timeout=self.timeout, transport=self.transport, follow_redirects=False)

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            scope=self.settings.scopes,
            redirect_uri=self.settings.redirect_url,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
            timeout=self.timeout,
            transport=self.transport,
        )

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (OpenID Connect Discovery 1.0), fetched once an hour;
        its issuer must be exactly the configured one (§4.3), its endpoints https outside local mode."""
        if self._metadata is not None and self.clock() - self._fetched_at < METADATA_SECONDS:
            return self._metadata
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with self._http() as http:
                answer = await http.get(url)
                answer.raise_for_status()
                metadata = answer.json()
        except (httpx2.HTTPError, ValueError) as error:
            raise OidcRefused("discovery", type(error).__name__) from error
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.settings.issuer:
            raise OidcRefused("discovery", "the discovery document names another issuer")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = metadata.get(endpoint)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise OidcRefused("discovery", f"no {endpoint}")
            if self.settings.require_https and not value.startswith("https://"):
                raise OidcRefused("discovery", f"{endpoint} is not https")
        if "S256" not in metadata.get("code_challenge_methods_supported", ["S256"]):
            raise OidcRefused("discovery", "the provider does not offer PKCE with S256")
        self._metadata, self._keys, self._fetched_at = metadata, None, self.clock()
        return metadata

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        metadata = await self.metadata()
        if self._keys is None or refresh:
            try:
                async with self._http() as http:
                    answer = await http.get(metadata["jwks_uri"])
                    answer.raise_for_status()
                    self._keys = answer.json()
            except (httpx2.HTTPError, ValueError) as error:
                raise OidcRefused("jwks", type(error).__name__) from error
        try:
            return KeySet.import_key_set(self._keys)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise OidcRefused("jwks", "unreadable key set") from error

    async def begin(self, lang: str) -> tuple[str, PendingSignIn]:
        """The provider's authorisation URL to send the browser to, and what the callback needs."""
        metadata = await self.metadata()
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters (RFC 7636: 43-128)
            lang=lang,
            started_at=self.clock(),
        )
        async with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                metadata["authorization_endpoint"],
                state=pending.state,
                code_verifier=pending.code_verifier,
                nonce=pending.nonce,
            )
        return url, pending

    async def finish(self, pending: PendingSignIn | None, params: Mapping[str, str]) -> dict[str, Any]:
        """The validated ID token's claims for the provider's answer on the callback, or OidcRefused."""
        if pending is None or pending.expired(self.clock()):
            raise OidcRefused("state", "no sign-in was started in this browser, or it took too long")
        if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise OidcRefused("state", "the state does not match the one this browser started with")
        if "error" in params:
            raise OidcRefused("provider", params.get("error", "")[:60])
        metadata = await self.metadata()
        # RFC 9207: a provider that names itself in the answer must name the configured issuer.
        if "iss" in params and params["iss"] != self.settings.issuer:
            raise OidcRefused("issuer", "the answer names another issuer")
        code = params.get("code", "")
        if not code:
            raise OidcRefused("provider", "no code")
        try:
            async with self._oauth() as oauth:
                token = await oauth.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                )
        except Exception as error:  # Authlib raises its own errors and httpx's
            raise OidcRefused("token", type(error).__name__) from error
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcRefused("token", "no ID token")
        return await self._validated_claims(id_token, token.get("access_token"), pending.nonce, metadata)

    async def _validated_claims(
        self, id_token: str, access_token: object, nonce: str, metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        registry = JWSRegistry(algorithms=[alg for alg in offered if alg in SIGNING_ALGORITHMS] or ["RS256"])
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys since we fetched them
                decoded = jwt.decode(id_token, await self._key_set(refresh=True), registry=registry)
        except (JoseError, ValueError) as error:
            raise OidcRefused("id_token", type(error).__name__) from error
        params: dict[str, Any] = {"nonce": nonce, "client_id": self.settings.client_id}
        if isinstance(access_token, str):
            params["access_token"] = access_token
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": self.settings.issuer},
                "aud": {"essential": True, "value": self.settings.client_id},
                "sub": {"essential": True},
            },
            params,
        )
        try:
            claims.validate(now=int(self.clock()), leeway=CLOCK_LEEWAY_SECONDS)
        except (JoseError, ValueError) as error:
            raise OidcRefused("id_token", type(error).__name__) from error
        return dict(claims)
