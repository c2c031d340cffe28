"""Sign-in at an identity provider: which scope the ID token's claims give (domain/oidc_scope.py),
the mapping file, and the MESH_NOTIFY_OIDC_* settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkernel.config import MeshSettings
from services.notify.adapters.oidc import PENDING_SECONDS, PendingSignIn, load_scope_mapping, oidc_problem
from services.notify.adapters.oidc_dashboard import USERNAME_LENGTH, account_name
from services.notify.domain.oidc_scope import (
    ScopeMapping,
    ScopeMappingError,
    ScopeReason,
    check_mapping,
    decide_scope,
)

REGIONS = {"GM0518": "Den Haag", "GM0344": "Utrecht", "GM0363": "Amsterdam"}
CLAIM = ScopeMapping(claim="mesh_region")


def test_a_region_code_in_the_claim_is_the_scope_whatever_its_case():
    assert decide_scope({"sub": "u1", "mesh_region": "GM0518"}, CLAIM, REGIONS).scope == "GM0518"
    assert decide_scope({"sub": "u1", "mesh_region": " gm0344 "}, CLAIM, REGIONS).scope == "GM0344"
    assert decide_scope({"sub": "u1", "mesh_region": "national"}, CLAIM, REGIONS).scope == "NATIONAL"


def test_no_claim_an_unknown_region_or_a_claim_of_another_type_is_refused():
    for claims in (
        {"sub": "u1"},
        {"sub": "u1", "mesh_region": "GM9999"},
        {"sub": "u1", "mesh_region": ""},
        {"sub": "u1", "mesh_region": 518},
        {"sub": "u1", "mesh_region": {"region": "GM0518"}},
        {"sub": "u1", "other_claim": "GM0518"},
    ):
        decision = decide_scope(claims, CLAIM, REGIONS)
        assert (decision.scope, decision.reason) == (None, ScopeReason.NO_SCOPE), claims


def test_a_groups_claim_maps_through_the_operators_table():
    mapping = ScopeMapping(
        claim="groups",
        claim_values={"coordinators-haaglanden": "GM0518", "national-coordinators": "NATIONAL"},
    )
    assert decide_scope({"sub": "u", "groups": ["staff", "coordinators-haaglanden"]}, mapping, REGIONS).scope == (
        "GM0518"
    )
    assert decide_scope({"sub": "u", "groups": ["staff"]}, mapping, REGIONS).scope is None
    # National among the values wins: a national coordinator sees every region anyway.
    national = decide_scope({"sub": "u", "groups": ["coordinators-haaglanden", "national-coordinators"]}, mapping, {})
    assert national.scope == "NATIONAL"


def test_two_regions_without_national_are_ambiguous_and_refused():
    decision = decide_scope({"sub": "u", "mesh_region": ["GM0518", "GM0344"]}, CLAIM, REGIONS)
    assert (decision.scope, decision.reason) == (None, ScopeReason.AMBIGUOUS)
    same_twice = decide_scope({"sub": "u", "mesh_region": ["GM0518", "gm0518"]}, CLAIM, REGIONS)
    assert same_twice.scope == "GM0518"


def test_a_subject_in_the_mapping_gets_the_mapped_scope_whatever_its_claims_say():
    mapping = ScopeMapping(claim="mesh_region", subjects={"248289761001": "GM0363"})
    decision = decide_scope({"sub": "248289761001", "mesh_region": "NATIONAL"}, mapping, REGIONS)
    assert (decision.scope, decision.reason) == ("GM0363", ScopeReason.SUBJECT_MAPPING)
    assert decide_scope({"sub": "someone-else", "mesh_region": "GM0518"}, mapping, REGIONS).scope == "GM0518"


@given(
    claim=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=12),
        st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["GM0518", "GM0344", "NATIONAL", "x"])), max_size=5),
    )
)
def test_any_claim_gives_one_known_scope_or_a_refusal(claim):
    decision = decide_scope({"sub": "u", "mesh_region": claim}, CLAIM, REGIONS)
    assert decision.scope is None or decision.scope in {*REGIONS, "NATIONAL"}
    assert (decision.scope is None) == (decision.reason in (ScopeReason.NO_SCOPE, ScopeReason.AMBIGUOUS))


def test_a_mapping_naming_an_unknown_region_is_refused_at_start():
    check_mapping(ScopeMapping(claim_values={"g": "GM0518"}, subjects={"s": "NATIONAL"}), REGIONS)
    with pytest.raises(ScopeMappingError, match="GM9999"):
        check_mapping(ScopeMapping(claim_values={"g": "GM9999"}), REGIONS)
    with pytest.raises(ScopeMappingError):
        check_mapping(ScopeMapping(claim=" "), REGIONS)


def _oidc(tmp_path, **settings) -> MeshSettings:
    secret = tmp_path / "client-secret"
    secret.write_text("a-client-secret-from-the-provider\n")
    values = {
        "mode": "production",
        "notify_oidc_issuer": "https://login.example.nl/realms/gemeente",
        "notify_oidc_client_id": "referral-mesh-dashboard",
        "notify_oidc_client_secret_file": secret,
        "notify_oidc_redirect_url": "https://dashboard.example.nl/login/oidc/callback",
    }
    values.update(settings)
    return MeshSettings(**values)


def test_the_mapping_file_is_read_and_checked(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("subjects:\n  '248289761001': national\nclaim_values:\n  coordinators-utrecht: GM0344\n")
    config = _oidc(tmp_path, notify_oidc_mapping_path=path, notify_oidc_scope_claim="groups")
    mapping = load_scope_mapping(config, REGIONS)
    assert mapping == ScopeMapping("groups", {"248289761001": "NATIONAL"}, {"coordinators-utrecht": "GM0344"})
    path.write_text("claim_values:\n  coordinators-elsewhere: GM9999\n")
    with pytest.raises(ScopeMappingError):
        load_scope_mapping(_oidc(tmp_path, notify_oidc_mapping_path=path), REGIONS)
    path.write_text("regions: [GM0518]\n")
    with pytest.raises(ValueError, match="only `subjects` and `claim_values`"):
        load_scope_mapping(_oidc(tmp_path, notify_oidc_mapping_path=path), REGIONS)


def test_oidc_is_off_without_an_issuer_and_a_complete_https_configuration_starts(tmp_path):
    assert not MeshSettings().oidc_enabled
    # The manifest names the secret file whether or not a provider is configured.
    without_issuer = _oidc(tmp_path, notify_oidc_issuer=None)
    assert not without_issuer.oidc_enabled and oidc_problem(without_issuer, "notify") is None
    config = _oidc(tmp_path)
    assert config.oidc_enabled and oidc_problem(config, "notify") is None


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"notify_oidc_client_id": None}, "MESH_NOTIFY_OIDC_CLIENT_ID as well"),
        ({"notify_oidc_issuer": "http://login.example.nl"}, "production mode needs https"),
        ({"notify_oidc_redirect_url": "http://dashboard.example.nl/login/oidc/callback"}, "needs https"),
        ({"notify_oidc_redirect_url": "https://dashboard.example.nl/callback"}, "must end in /login/oidc/callback"),
        ({"notify_oidc_issuer": "login.example.nl"}, "not an absolute http(s) URL"),
        ({"notify_oidc_scopes": "profile email"}, "must include openid"),
    ],
)
def test_incomplete_or_unsafe_oidc_settings_stop_the_notify_service_at_start(tmp_path, settings, complaint):
    config = _oidc(tmp_path, **settings)
    assert complaint in (oidc_problem(config, "notify") or "")
    assert oidc_problem(config, "region") is None  # the other services do not sign coordinators in


def test_http_is_allowed_in_local_mode_only(tmp_path):
    config = _oidc(
        tmp_path,
        mode="local",
        notify_oidc_issuer="http://localhost:8080",
        notify_oidc_redirect_url="http://127.0.0.1:6066/login/oidc/callback",
    )
    assert oidc_problem(config, "notify") is None


def test_a_missing_or_empty_client_secret_file_stops_the_start(tmp_path):
    config = _oidc(tmp_path, notify_oidc_client_secret_file=tmp_path / "nowhere")
    assert "nowhere" in (oidc_problem(config, "notify") or "")
    (tmp_path / "empty").write_text("\n")
    empty = _oidc(tmp_path, notify_oidc_client_secret_file=tmp_path / "empty")
    assert "is empty" in (oidc_problem(empty, "notify") or "")
    assert oidc_problem(config, "referral") is None  # only the notify service signs coordinators in


def test_the_pending_sign_in_survives_its_cookie_and_nothing_else_does():
    pending = PendingSignIn(state="s", nonce="n", code_verifier="v" * 43, lang="nl", started_at=1000.0)
    assert PendingSignIn.from_cookie(pending.to_cookie()) == pending
    for garbage in (None, "", "not base64!", "e30=", "W10="):  # "{}" and "[]"
        assert PendingSignIn.from_cookie(garbage) is None
    assert not pending.expired(1000.0 + PENDING_SECONDS)
    assert pending.expired(1000.0 + PENDING_SECONDS + 1) and pending.expired(999.0)


def test_account_names_keep_the_subject_only_and_fit_the_column():
    assert account_name("248289761001") == "oidc:248289761001"
    long_subject = "x" * 200
    for subject in (long_subject, "name with spaces", "Émile"):
        name = account_name(subject)
        assert name.startswith("oidc:sha256-") and len(name) <= USERNAME_LENGTH
    assert account_name(long_subject) != account_name(long_subject + "y")
