"""The relying party's checks (adapters/oidc.py) against a provider answering through httpx's
mock transport: PKCE and client authentication on the token request, and every ID token that
must not sign anyone in (wrong signature, audience, issuer, nonce, expiry, a symmetric algorithm)."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from services.notify.adapters.oidc import OidcClientSettings, OidcRefused, OidcSignIn, PendingSignIn

ISSUER = "https://login.example.nl/realms/gemeente"
NOW = 1_800_000_000
SETTINGS = OidcClientSettings(
    issuer=ISSUER,
    client_id="referral-mesh-dashboard",
    client_secret="the-client-secret",
    redirect_url="https://dashboard.example.nl/login/oidc/callback",
    scopes="openid mesh",
)
SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


def id_token_claims(**changes) -> dict:
    claims = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": SETTINGS.client_id,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": "the-nonce",
        "mesh_region": "GM0518",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


class Provider:
    """Discovery, JWKS and a token endpoint that hands out the ID token a test chose."""

    def __init__(self, id_token: str, discovery_issuer: str = ISSUER, scheme: str = "https"):
        self.id_token = id_token
        self.discovery_issuer = discovery_issuer
        self.scheme = scheme
        self.token_requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        base = f"{self.scheme}://login.example.nl/realms/gemeente"
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx2.Response(
                200,
                json={
                    "issuer": self.discovery_issuer,
                    "authorization_endpoint": base + "/auth",
                    "token_endpoint": base + "/token",
                    "jwks_uri": base + "/certs",
                    "code_challenge_methods_supported": ["S256"],
                    "id_token_signing_alg_values_supported": ["RS256", "HS256"],
                },
            )
        if request.url.path.endswith("/certs"):
            return httpx2.Response(200, json=KeySet([SIGNING_KEY]).as_dict(private=False))
        if request.url.path.endswith("/token"):
            self.token_requests.append(request)
            return httpx2.Response(
                200, json={"access_token": "opaque", "token_type": "Bearer", "id_token": self.id_token}
            )
        return httpx2.Response(404)


def signed(claims: dict, key=SIGNING_KEY, alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key)


def sign_in(provider: Provider) -> OidcSignIn:
    return OidcSignIn(SETTINGS, transport=httpx2.MockTransport(provider), clock=lambda: NOW)


PENDING = PendingSignIn(state="the-state", nonce="the-nonce", code_verifier="v" * 64, lang="nl", started_at=NOW)
ANSWER = {"state": "the-state", "code": "the-code", "iss": ISSUER}


async def test_the_authorisation_request_carries_state_nonce_and_an_s256_challenge():
    url, pending = await sign_in(Provider(signed(id_token_claims()))).begin("en")
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://login.example.nl/realms/gemeente/auth?")
    assert query["response_type"] == "code" and query["client_id"] == SETTINGS.client_id
    assert query["redirect_uri"] == SETTINGS.redirect_url and query["scope"] == "openid mesh"
    assert (query["state"], query["nonce"]) == (pending.state, pending.nonce)
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == create_s256_code_challenge(pending.code_verifier)
    assert 43 <= len(pending.code_verifier) <= 128


async def test_a_genuine_answer_signs_in_with_the_verifier_and_the_client_secret():
    provider = Provider(signed(id_token_claims()))
    claims = await sign_in(provider).finish(PENDING, ANSWER)
    assert (claims["sub"], claims["mesh_region"]) == ("248289761001", "GM0518")
    (request,) = provider.token_requests
    body = parse_qs(request.content.decode())
    assert body["grant_type"] == ["authorization_code"] and body["code"] == ["the-code"]
    assert body["code_verifier"] == [PENDING.code_verifier]
    assert body["redirect_uri"] == [SETTINGS.redirect_url]
    expected = base64.b64encode(f"{SETTINGS.client_id}:{SETTINGS.client_secret}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.parametrize(
    "id_token",
    [
        pytest.param(signed(id_token_claims(), key=OTHER_KEY), id="signed-by-another-key"),
        pytest.param(signed(id_token_claims(aud="another-client")), id="another-audience"),
        pytest.param(signed(id_token_claims(iss="https://elsewhere.example")), id="another-issuer"),
        pytest.param(signed(id_token_claims(nonce="replayed-nonce")), id="another-nonce"),
        pytest.param(signed(id_token_claims(nonce=None)), id="no-nonce"),
        pytest.param(signed(id_token_claims(exp=NOW - 120)), id="expired"),
        pytest.param(
            signed(id_token_claims(), key=OctKey.import_key(SETTINGS.client_secret.encode() * 2), alg="HS256"),
            id="hmac-with-a-guessable-key",
        ),
        pytest.param(
            ".".join(
                base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                for part in ({"alg": "none"}, id_token_claims())
            )
            + ".",
            id="unsigned",
        ),
    ],
)
async def test_an_id_token_that_fails_any_check_signs_nobody_in(id_token):
    with pytest.raises(OidcRefused) as refused:
        await sign_in(Provider(id_token)).finish(PENDING, ANSWER)
    assert refused.value.code == "id_token"


async def test_a_tampered_or_missing_state_is_refused_before_the_code_is_used():
    provider = Provider(signed(id_token_claims()))
    for pending, answer in (
        (PENDING, {**ANSWER, "state": "tampered"}),
        (PENDING, {"code": "the-code"}),
        (None, ANSWER),  # no sign-in started in this browser
        (PendingSignIn("the-state", "the-nonce", "v" * 64, "nl", started_at=NOW - 3600), ANSWER),  # too old
    ):
        with pytest.raises(OidcRefused) as refused:
            await sign_in(provider).finish(pending, answer)
        assert refused.value.code == "state"
    assert provider.token_requests == []


async def test_an_answer_naming_another_issuer_or_a_provider_error_is_refused():
    provider = Provider(signed(id_token_claims()))
    with pytest.raises(OidcRefused, match="issuer"):
        await sign_in(provider).finish(PENDING, {**ANSWER, "iss": "https://mix-up.example"})
    with pytest.raises(OidcRefused, match="provider"):
        await sign_in(provider).finish(PENDING, {"state": "the-state", "error": "access_denied"})
    assert provider.token_requests == []


async def test_discovery_must_name_the_configured_issuer_and_https_endpoints():
    with pytest.raises(OidcRefused, match="discovery"):
        await sign_in(Provider("", discovery_issuer="https://impostor.example")).begin("nl")
    with pytest.raises(OidcRefused, match="not https"):
        await sign_in(Provider("", scheme="http")).begin("nl")
