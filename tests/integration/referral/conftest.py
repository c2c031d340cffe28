"""Set-up for the referral storage and gRPC integration tests, on SQLite and on PostgreSQL.

PostgreSQL comes from Debian's packages through scripts/postgres.sh (reused when it already
runs; left running for the next session, its data lives under .cache/postgres). Each test
gets a fresh database of its own. Missing PostgreSQL binaries fail the run, loudly: CI
installs them, and a silent skip would hide that half the storage tests did not run.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from meshkernel.config import PROJECT_ROOT, MeshSettings
from referralmesh.v1 import common_pb2
from services.referral.adapters.storage import ReferralStore, make_engine, migrate
from services.referral.application import Caller, NewReferral, ReferralUseCases
from services.referral.domain import load_directory

POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"
BACKENDS = ("sqlite", "postgresql")

SENDER = "central-amsterdam"
RECEIVER = "shelter-amsterdam"
NEXT = "exit-amsterdam"
STRANGER = "care-rotterdam"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    external = os.environ.get("TEST_POSTGRES_URL")
    if external:
        return external
    started = subprocess.run([str(POSTGRES_SCRIPT), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(
            "PostgreSQL is needed for the referral storage tests and could not be started:\n"
            f"{started.stderr.strip()}\n(install it with `apt-get install -y postgresql`)",
            pytrace=False,
        )
    return subprocess.run([str(POSTGRES_SCRIPT), "url"], capture_output=True, text=True, check=True).stdout.strip()


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


@pytest.fixture
def fresh_database_url(request, tmp_path, postgres_url_lazy):
    """A new empty database of the backend named by the test's `backend` parameter."""
    backend = request.param if hasattr(request, "param") else request.getfixturevalue("backend")
    yield from _fresh_database(backend, tmp_path, postgres_url_lazy)


def _fresh_database(backend: str, folder, postgres_url_getter):
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'referral-{uuid.uuid4().hex[:8]}.db'}"
        return
    base = postgres_url_getter()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(base), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(_admin_url(base), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url_lazy(request):
    """Starts PostgreSQL only when a test really needs it."""
    return lambda: request.getfixturevalue("postgres_url")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path, postgres_url_lazy):
    yield from _fresh_database(backend, tmp_path, postgres_url_lazy)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine) -> ReferralStore:
    migrate(engine)
    return ReferralStore(engine)


@pytest.fixture
def config() -> MeshSettings:
    return MeshSettings(topic_prefix="storage-test.")


@pytest.fixture
def use_cases(store, config) -> ReferralUseCases:
    return ReferralUseCases(store, config, load_directory(config.agency_directory_path))


def caller(agency: str) -> Caller:
    return Caller(agency_id=agency, user="worker-7")


def new_referral(case_id: str | None = None, *, key: str | None = None, receiver: str = RECEIVER,
                 need: str = "shelter", urgency: str = "NORMAL") -> NewReferral:
    case_id = case_id or f"case-{uuid.uuid4().hex[:10]}"
    facts = common_pb2.BindingFacts(grew_up_in=["GM0363"])
    fingerprint = f"{case_id}|{receiver}|{need}|{urgency}".encode()
    return NewReferral(
        request_key=key or f"key-{uuid.uuid4().hex}",
        case_id=case_id,
        receiver_agency=receiver,
        match_domain=None, match_region=None, match_language=None,
        need_domains=(need,),
        urgency=urgency,
        languages=("nl", "en"),
        asked_in="GM0363",
        facts=facts,
        consent_organisations=(SENDER, RECEIVER, NEXT),
        consent_purpose="REFERRAL",
        consent_valid_until=datetime.now(timezone.utc) + timedelta(days=90),
        fingerprint_source=fingerprint,
    )
