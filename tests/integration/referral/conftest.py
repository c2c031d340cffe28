"""Set-up for the referral storage and gRPC integration tests, on SQLite and on PostgreSQL.

PostgreSQL comes from Debian's packages through scripts/postgres.sh (reused when it already
runs; left running for the next session; its data lives outside the checkout, see the script). Each test
gets a fresh database of its own. Missing PostgreSQL binaries fail the run, loudly: CI
installs them, and a silent skip would hide that half the storage tests did not run.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from meshkernel.config import PROJECT_ROOT, MeshSettings
from services.referral.adapters.storage import ReferralStore, make_engine, migrate
from services.referral.application import ReferralUseCases
from services.referral.domain import load_directory
from tests.integration.referral.referral_db_kit import BACKENDS, fresh_database

POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"


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


@pytest.fixture
def fresh_database_url(request, tmp_path, postgres_url_lazy):
    """A new empty database of the backend named by the test's `backend` parameter."""
    backend = request.param if hasattr(request, "param") else request.getfixturevalue("backend")
    yield from fresh_database(backend, tmp_path, postgres_url_lazy)


@pytest.fixture
def postgres_url_lazy(request):
    """Starts PostgreSQL only when a test really needs it."""
    return lambda: request.getfixturevalue("postgres_url")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database_url(backend, tmp_path, postgres_url_lazy):
    yield from fresh_database(backend, tmp_path, postgres_url_lazy)


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
