"""`mesh kafka`: credentials, topics and ACLs of a secured Kafka cluster.

    mesh kafka secrets DIR      a local CA, the broker's PEM keystore, one password per principal
                                and an env file per principal (what SECURE=1 scripts/kafka.sh uses)
    mesh kafka provision        as the admin principal: create the mesh topics, set the SCRAM
                                credentials of the principals (--credentials DIR), apply the ACLs
    mesh kafka acls             print the ACL plan for MESH_TOPIC_PREFIX (no broker needed)

Layout of DIR (0700; keys and passwords 0600):

    ca.crt ca.key                     the CA that signs the broker certificate (meshcli/pki.py)
    broker.pem                        the broker's private key and certificate chain (PEM keystore)
    passwords/<principal>.password    admin, broker, referral, region, notify, observer
    env/<principal>.env               MESH_KAFKA_* settings (and KAFKA_BOOTSTRAP) for that principal

Idempotent: what exists is kept, so a restarted broker and its clients keep their credentials.
This is a local/test set-up; a production cluster has its operator's CA and secret store, and
needs only `mesh kafka provision` (or the same ACLs applied by its own tooling).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from meshcli import pki
from meshkernel.kafka_acl import ADMIN, BROKER, PRINCIPALS, Grant, acl_plan

SCRAM_ITERATIONS = 8192  # Kafka's maximum for SCRAM-SHA-512 is 16384; 4096 is its minimum
FORMAT_TIME_PRINCIPALS = (ADMIN, BROKER)  # needed before any admin request can be made


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def password_file(directory: Path, principal: str) -> Path:
    return directory / "passwords" / f"{principal}.password"


def env_file(directory: Path, principal: str) -> Path:
    return directory / "env" / f"{principal}.env"


def principal_env(directory: Path, principal: str, bootstrap: str | None) -> dict[str, str]:
    env = {
        "MESH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MESH_KAFKA_CA": str(directory / "ca.crt"),
        "MESH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MESH_KAFKA_USERNAME": principal,
        "MESH_KAFKA_PASSWORD_FILE": str(password_file(directory, principal)),
    }
    if bootstrap:
        env["KAFKA_BOOTSTRAP"] = bootstrap
    return env


def make_secrets(directory: Path, *, bootstrap: str | None = None, hosts: tuple[str, ...] = (), log=print) -> None:
    """Create or complete the broker's TLS material and every principal's password and env file."""
    directory = _private_dir(directory.resolve())
    _private_dir(directory / "passwords")
    _private_dir(directory / "env")

    ca_crt, ca_key_path = directory / "ca.crt", directory / "ca.key"
    if ca_crt.exists() and ca_key_path.exists():
        ca_cert, ca_key = pki.load_cert(ca_crt), pki.load_key(ca_key_path)
    else:
        ca_cert, ca_key = pki.make_ca(common_name="Referral Mesh Kafka Demo CA")
        pki.write_key(ca_key_path, ca_key)
        pki.write_cert(ca_crt, ca_cert)
        log(f"created the Kafka CA {ca_crt}")

    broker_pem = directory / "broker.pem"
    names = ("127.0.0.1", "::1", "localhost", *hosts)
    if not broker_pem.exists() or not pki._has_names(pki.load_cert(broker_pem), names):
        from cryptography.hazmat.primitives import serialization

        cert, key = pki.issue_kafka_broker(ca_cert, ca_key, names)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(broker_pem, key_pem + cert.public_bytes(serialization.Encoding.PEM))
        log(f"issued the broker certificate for {', '.join(names)}")

    for principal in (*PRINCIPALS, BROKER):
        secret = password_file(directory, principal)
        if not secret.exists():
            _write_private(secret, (secrets.token_hex(24) + "\n").encode())
        if principal == BROKER:
            continue  # the broker's password lives in its own configuration, not in an env file
        lines = "".join(f"{key}={value}\n" for key, value in principal_env(directory, principal, bootstrap).items())
        _write_private(env_file(directory, principal), lines.encode())
    log(f"Kafka credentials ready in {directory}")


def read_password(directory: Path, principal: str) -> str:
    return password_file(directory, principal).read_text(encoding="utf-8").strip()


def _acl(grant: Grant):
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    pattern = ResourcePattern(
        ResourceType.TOPIC if grant.resource == "topic" else ResourceType.GROUP,
        grant.name,
        ACLResourcePatternType.PREFIXED if grant.pattern == "prefixed" else ACLResourcePatternType.LITERAL,
    )
    return ACL(
        principal=f"User:{grant.principal}",
        host="*",
        operation=ACLOperation[grant.operation],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=pattern,
    )


def set_scram_credentials(admin, directory: Path, principals) -> list[str]:
    """Create or replace the SCRAM-SHA-512 credentials of `principals` from their password files."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    upserts = [
        UserScramCredentialUpsertion(
            principal, ScramMechanism.SCRAM_SHA_512, read_password(directory, principal), iterations=SCRAM_ITERATIONS
        )
        for principal in principals
    ]
    if upserts:
        admin.alter_user_scram_credentials(upserts)
    return [upsert.user for upsert in upserts]


def provision(config, *, credentials: Path | None = None, log=print) -> list[Grant]:
    """As the admin principal: topics, credentials, ACLs. Safe to run again (nothing is duplicated)."""
    from meshkernel.kafka import connect_admin
    from meshkernel.topics import ensure_topics

    admin = connect_admin(config, "provision", give_up_after=90)
    try:
        created = ensure_topics(admin, config)
        log(f"topics: {len(created)} created under prefix {config.topic_prefix!r}")
        if credentials is not None:
            users = set_scram_credentials(
                admin, credentials, [p for p in PRINCIPALS if p not in FORMAT_TIME_PRINCIPALS]
            )
            log(f"SCRAM credentials set for {', '.join(users)}")
        plan = acl_plan(config.topic_prefix)
        result = admin.create_acls([_acl(grant) for grant in plan])
        failed = result.get("failed", []) if isinstance(result, dict) else []
        if failed:
            raise RuntimeError(f"{len(failed)} ACLs were refused by the broker: {failed[0]}")
        log(f"ACLs: {len(plan)} grants in place")
        return plan
    finally:
        admin.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="kafka_command", required=True)
    make = commands.add_parser("secrets", help="local CA, broker keystore, a password and env file per principal")
    make.add_argument("dir", type=Path)
    make.add_argument("--bootstrap", default=None, help="host:port written into the env files")
    make.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP address for the broker certificate (repeatable)",
    )
    prov = commands.add_parser("provision", help="as the admin principal: topics, SCRAM credentials, ACLs")
    prov.add_argument(
        "--credentials",
        type=Path,
        default=None,
        help="a folder of `mesh kafka secrets`: set the principals' passwords from it",
    )
    commands.add_parser("acls", help="print the ACL plan for MESH_TOPIC_PREFIX")


def run(options) -> int:
    from meshkernel.config import settings

    if options.kafka_command == "secrets":
        make_secrets(
            options.dir,
            bootstrap=options.bootstrap,
            hosts=tuple(options.host),
            log=lambda line: print(line, file=sys.stderr),
        )
        return 0
    if options.kafka_command == "acls":
        for grant in acl_plan(settings().topic_prefix):
            print(grant)
        return 0
    provision(settings(), credentials=options.credentials, log=lambda line: print(line, file=sys.stderr))
    return 0
