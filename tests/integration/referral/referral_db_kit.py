"""Helpers shared by the referral storage and gRPC integration tests: agencies, builders, and a
fresh database of either backend (the fixtures in conftest.py use them too)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from referralmesh.v1 import common_pb2
from services.referral.application import Caller, NewReferral

BACKENDS = ("sqlite", "postgresql")

SENDER = "central-amsterdam"
RECEIVER = "shelter-amsterdam"
NEXT = "exit-amsterdam"
STRANGER = "care-rotterdam"


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def fresh_database(backend: str, folder, postgres_url_getter):
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


def caller(agency: str) -> Caller:
    return Caller(agency_id=agency, user="worker-7")


def new_referral(
    case_id: str | None = None,
    *,
    key: str | None = None,
    receiver: str = RECEIVER,
    need: str = "shelter",
    urgency: str = "NORMAL",
) -> NewReferral:
    case_id = case_id or f"case-{uuid.uuid4().hex[:10]}"
    facts = common_pb2.BindingFacts(grew_up_in=["GM0363"])
    fingerprint = f"{case_id}|{receiver}|{need}|{urgency}".encode()
    return NewReferral(
        request_key=key or f"key-{uuid.uuid4().hex}",
        case_id=case_id,
        receiver_agency=receiver,
        match_domain=None,
        match_region=None,
        match_language=None,
        need_domains=(need,),
        urgency=urgency,
        languages=("nl", "en"),
        asked_in="GM0363",
        facts=facts,
        consent_organisations=(SENDER, RECEIVER, NEXT),
        consent_purpose="REFERRAL",
        consent_valid_until=datetime.now(UTC) + timedelta(days=90),
        fingerprint_source=fingerprint,
    )
