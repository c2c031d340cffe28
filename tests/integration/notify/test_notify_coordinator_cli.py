"""`mesh coordinator add|disable|enable|reset-password|list` on a real notify store."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from meshcli.main import _parser
from meshkernel.config import MeshSettings
from services.notify import accounts
from services.notify.adapters import passwords
from services.notify.adapters.dashboard import LocalPasswords
from services.notify.adapters.store import NotifyStore
from services.notify.paths import NotifyPaths


@pytest.fixture
def config(tmp_path):
    return MeshSettings(state_dir=tmp_path / "state")


def mesh(config, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = accounts.run(
        _parser().parse_args(["coordinator", *argv]), config, stdin=io.StringIO(stdin), stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


def _store(config) -> NotifyStore:
    return NotifyStore.open(NotifyPaths.of(config).database_url)


def test_add_creates_an_account_whose_random_password_is_shown_once_and_signs_in(config):
    code, out, _ = mesh(config, "add", "coord-haaglanden", "--region", "gm0518")
    assert code == 0 and "added (GM0518)" in out
    password = out.split("password: ", 1)[1].split()[0]
    assert len(password) >= 20
    store = _store(config)
    row = store.coordinator("coord-haaglanden")
    assert row["scope"] == "GM0518" and not row["demo"] and password not in row["password_hash"]
    assert not passwords.needs_rehash(row["password_hash"])  # OWASP's cost
    assert LocalPasswords(store).authenticate("coord-haaglanden", password).scope == "GM0518"
    assert [e["action"] for e in store.access_entries("-")] == ["ACCOUNT_ADDED"]
    _, listed, _ = mesh(config, "list")
    assert listed.strip() == "coord-haaglanden\tGM0518\tactive" and "scrypt" not in listed


def test_a_national_account_and_a_password_from_standard_input(config):
    code, out, _ = mesh(config, "add", "coord-nl", "--national", "--password-stdin", stdin="a-password-of-mine\n")
    assert code == 0 and "password:" not in out
    assert LocalPasswords(_store(config)).authenticate("coord-nl", "a-password-of-mine").scope == "NATIONAL"


def test_bad_requests_change_nothing_and_say_why(config):
    assert mesh(config, "add", "coord-x", "--region", "GM9999")[0] == 2
    assert "not a region" in mesh(config, "add", "coord-x", "--region", "GM9999")[2]
    assert "username" in mesh(config, "add", "Coord X", "--national")[2]
    assert "at least 12" in mesh(config, "add", "coord-x", "--national", "--password-stdin", stdin="short\n")[2]
    assert mesh(config, "disable", "nobody")[0] == 2
    assert mesh(config, "reset-password", "nobody")[0] == 2
    assert _store(config).coordinator_list() == []
    mesh(config, "add", "coord-x", "--national")
    assert "exists already" in mesh(config, "add", "coord-x", "--national")[2]


def test_disable_ends_sessions_and_sign_in_and_enable_restores_sign_in(config):
    _, out, _ = mesh(config, "add", "coord-x", "--region", "GM0518")
    password = out.split("password: ", 1)[1].split()[0]
    store = _store(config)
    store.add_session("token-hash", "coord-x", expires_at=4e9)
    assert mesh(config, "disable", "coord-x")[0] == 0
    assert store.session_user("token-hash") is None
    assert LocalPasswords(store).authenticate("coord-x", password) is None
    assert "disabled" in mesh(config, "list")[1]
    mesh(config, "enable", "coord-x")
    assert LocalPasswords(store).authenticate("coord-x", password) is not None


def test_reset_password_replaces_the_password_and_ends_sessions(config):
    _, out, _ = mesh(config, "add", "coord-x", "--region", "GM0518")
    old = out.split("password: ", 1)[1].split()[0]
    store = _store(config)
    store.add_session("token-hash", "coord-x", expires_at=4e9)
    code, out, _ = mesh(config, "reset-password", "coord-x", "--password-stdin", stdin="the-new-password\n")
    assert code == 0 and "sessions ended" in out
    assert store.session_user("token-hash") is None
    assert LocalPasswords(store).authenticate("coord-x", old) is None
    assert LocalPasswords(store).authenticate("coord-x", "the-new-password") is not None
    assert [e["action"] for e in store.access_entries("-")] == ["ACCOUNT_ADDED", "PASSWORD_RESET"]


def test_the_mesh_command_manages_accounts_in_the_configured_state_folder(tmp_path):
    env = dict(os.environ, MESH_STATE_DIR=str(tmp_path / "state"), MESH_TOPIC_PREFIX="cli.")
    mesh_command = [sys.executable, "-m", "meshcli.main", "coordinator"]
    added = subprocess.run(
        [*mesh_command, "add", "coord-gm0344", "--region", "GM0344"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    listed = subprocess.run([*mesh_command, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.stdout.strip() == "coord-gm0344\tGM0344\tactive"
    assert (tmp_path / "state" / "cli.notify" / "notify.db").exists()


def test_mesh_notify_login_offers_no_demo_login_outside_local_mode(monkeypatch, tmp_path, capsys):
    from meshcli.main import main
    from meshkernel.config import settings

    monkeypatch.setenv("MESH_MODE", "production")
    monkeypatch.setenv("MESH_STATE_DIR", str(tmp_path / "state"))
    settings.cache_clear()
    try:
        assert main(["notify", "login"]) == 2
        assert "mesh coordinator add" in capsys.readouterr().err
        assert not (tmp_path / "state" / "notify" / "demo-coordinators.json").exists()
    finally:
        settings.cache_clear()
