"""`make run`: Kafka, the three services and a short scenario, printed step by step.

Scenario: a client who has worked in salons in two regions without ever registering (bound
nowhere) asks the exit programme in Den Haag for help; it refers her to a shelter agency in
Utrecht. The mesh names a responsible region at once and notifies everyone concerned.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request
import uuid

from meshcli import ports
from meshcli.client import NotifyClient, ReferralClient, consent_for
from meshcli.supervisor import (
    KAFKA_SCRIPT,
    ZIPKIN_SCRIPT,
    Stack,
    StopRequested,
    Watchdog,
    ignoring_stop_signals,
    kafka_answers,
    say_safely,
    start_kafka,
    start_zipkin_in_background,
    stop_kafka,
    stop_signals,
    stop_zipkin,
    zipkin_answers,
    zipkin_url,
)
from meshcli.watch import EventWatcher
from meshkernel.config import PROJECT_ROOT, settings
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, NOTIFICATIONS, OVERRIDES, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from referralmesh.v1 import referral_service_pb2 as api
from services.notify.demo import client_outbox_path, dashboard_login, describe_dashboard

SENDER = "exit-the-hague"
DEMO_PHONE = "+31 6 00000001"  # a made-up number: the demo never texts anyone
RECEIVER = "shelter-utrecht"
STEP_TIMEOUT = 90.0
DEMO_ESCALATION_POLICY = PROJECT_ROOT / "services" / "region" / "config" / "escalation-demo.yaml"
COORDINATOR_REGION = "GM0518"


class Narrator:
    def __init__(self):
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        say_safely(f"[{elapsed:6.1f}s] {text}")


def demo_request(case_id: str, contact: common_pb2.SealedContact | None = None) -> api.CreateReferralRequest:
    facts = common_pb2.BindingFacts(
        work=[
            common_pb2.Period(municipality="GM0518", from_date="2025-03-01", to_date="2025-12-31"),
            common_pb2.Period(municipality="GM0363", from_date="2026-01-15", to_date=""),
        ],
    )
    return api.CreateReferralRequest(
        request_key=f"demo-{case_id}",
        case_id=case_id,
        receiver_agency=RECEIVER,
        need_domains=["shelter"],
        urgency=common_pb2.URGENT,
        languages=["es", "en"],
        asked_in="GM0518",
        facts=facts,
        consent=consent_for(SENDER, RECEIVER),
        contact=contact,
    )


def run_demo() -> int:
    # The demo is a development mesh: plaintext and development identities, on loopback only.
    os.environ.setdefault("MESH_MODE", "local")
    settings.cache_clear()
    config = settings()
    narrator = Narrator()
    env = dict(os.environ)
    # Deadlines of seconds instead of hours, so the stalled case escalates while you watch.
    env.setdefault("MESH_ESCALATION_POLICY_PATH", str(DEMO_ESCALATION_POLICY))
    tracing_ui = env.get("MESH_TRACING_UI", "zipkin") == "zipkin" and "OTEL_TRACES_EXPORTER" not in env
    start_zipkin = tracing_ui and not zipkin_answers(env)
    start_broker = "KAFKA_BOOTSTRAP" not in os.environ and not kafka_answers(env)
    problems = ports.taken(
        ports.service_ports(config)
        + (ports.kafka_ports(env) if start_broker else [])
        + (ports.zipkin_ports(env) if start_zipkin else [])
    )
    if problems:
        for problem in problems:
            narrator.say(f"cannot start: {problem}")
        return 2

    watchdog = Watchdog(env, config.state_dir / "logs" / "watchdog.log")
    stack = Stack(env=env, log_dir=config.state_dir / "logs", watchdog=watchdog)
    zipkin_start = None
    with stop_signals() as disarm:
        try:
            if start_zipkin:
                narrator.say("starting Zipkin, the tracing UI")
                watchdog.watch_script(ZIPKIN_SCRIPT)
                zipkin_start = start_zipkin_in_background(env)
            if tracing_ui:
                env["OTEL_TRACES_EXPORTER"] = "zipkin"
                env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] = zipkin_url(env).replace("/zipkin/", "/api/v2/spans")
            if start_broker:
                narrator.say("starting Apache Kafka (first run downloads the broker jars)")
                watchdog.watch_script(KAFKA_SCRIPT)
                start_kafka(env)
            else:
                narrator.say(f"reusing the Kafka broker at {config.kafka_bootstrap}")
            prepare_kafka(config, "demo")
            if zipkin_start is not None and zipkin_start.wait() != 0:
                narrator.say("Zipkin did not start; the demo runs on without a tracing UI")
                tracing_ui = False
            for service in ("referral", "region", "notify"):
                stack.start(service)
            narrator.say(f"started the referral, region and notify services (logs in {stack.log_dir})")
            _play(config, narrator, stack, zipkin_url(env) if tracing_ui else None)
            narrator.say("demo complete; the mesh keeps running. Press Ctrl-C to stop everything.")
            while True:
                crashed = stack.crashed()
                if crashed:
                    narrator.say(f"service stopped unexpectedly: {', '.join(crashed)} (see its log)")
                    return 1
                time.sleep(0.5)
        except StopRequested as stop:
            narrator.say(f"{stop} received")
            return 0
        except _DemoFailed as failure:
            narrator.say(f"demo failed: {failure}")
            return 1
        finally:
            disarm()
            with ignoring_stop_signals():
                _stop_everything(narrator, stack, env, start_broker, zipkin_start)
                watchdog.done()


def _stop_everything(narrator: Narrator, stack: Stack, env: dict[str, str], started_broker: bool, zipkin_start) -> None:
    narrator.say("stopping the services")
    stack.stop_all()
    if zipkin_start is not None:
        if zipkin_start.poll() is None:
            zipkin_start.kill()
            zipkin_start.wait()
        stop_zipkin(env)
    if started_broker:
        stop_kafka(env)
    narrator.say("stopped; no process left behind")


class _DemoFailed(Exception):
    pass


def _print_endpoints(config, tracing_url: str | None) -> None:
    say_safely("")
    say_safely("  user-facing endpoints")
    say_safely(
        f"    referral gRPC API      {config.referral_grpc_address}  (health + reflection: "
        f"grpcurl -plaintext {config.referral_grpc_address} list)"
    )
    say_safely(f"    region health (HTTP)   http://127.0.0.1:{config.region_web_port}/health")
    say_safely(f"    Kafka bootstrap        {config.kafka_bootstrap}")
    say_safely(f"    notify gRPC API        {config.notify_grpc_address}  (alert stream, SealContact)")
    say_safely(f"    {describe_dashboard(config)}")
    if tracing_url:
        say_safely(f"    tracing UI (Zipkin)    {tracing_url}  (search by tag referralmesh.case_id)")
    say_safely(
        f"    metrics (Prometheus)   http://127.0.0.1:{config.referral_metrics_port}/metrics, "
        f":{config.region_metrics_port}/metrics, :{config.notify_metrics_port}/metrics"
    )
    say_safely("")
    say_safely(TLS_HOWTO)


TLS_HOWTO = """  this demo runs in MESH_MODE=local: plaintext gRPC and development identities, on loopback only.
  With mutual TLS (production mode, the default when MESH_MODE is unset):
    mesh pki init var/pki     # local CA with intermediates: servers, agencies, coordinators, services, CRLs
    export MESH_TLS_CERT=var/pki/server.crt MESH_TLS_KEY=var/pki/server.key \\
           MESH_TLS_CA=var/pki/ca.crt MESH_TLS_CRL=var/pki/crl.pem
    mesh serve referral & mesh serve region & mesh serve notify &
    MESH_TLS_AGENCY_DIR=var/pki/agencies mesh referral --agency exit-the-hague list
  (README.md, "Certificates and revocation"; notify also needs its key-encryption key and
  dashboard TLS, and Kafka its credentials: README.md, "Operating it")
"""


class _Timeline:
    """Prints every event of the case as it arrives and waits for the one a step needs."""

    def __init__(self, watcher: EventWatcher, case_id: str, narrator: Narrator, stack: Stack):
        self.watcher, self.case_id, self.narrator, self.stack = watcher, case_id, narrator, stack
        self.seen: list = []

    def until(self, wanted, what: str, timeout: float = STEP_TIMEOUT):
        for earlier in self.seen:
            if wanted(earlier):
                return earlier
        for topic, envelope in self.watcher.events({self.case_id}, timeout=timeout):
            self.seen.append(envelope)
            self.narrator.say(_describe(topic, envelope))
            if wanted(envelope):
                return envelope
            if self.stack.crashed():
                raise _DemoFailed(f"service stopped: {', '.join(self.stack.crashed())}")
        raise _DemoFailed(f"{what} did not arrive within {timeout:.0f}s")


def _is(kind: str, **fields):
    def match(envelope) -> bool:
        if envelope.WhichOneof("payload") != kind:
            return False
        payload = getattr(envelope, kind)
        return all(getattr(payload, name) == value for name, value in fields.items())

    return match


def _play(config, narrator: Narrator, stack: Stack, tracing_url: str | None) -> None:
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    client = ReferralClient(config.referral_grpc_address, SENDER)
    notify = NotifyClient(config.notify_grpc_address, agency=SENDER)
    watcher = EventWatcher(config, [REFERRAL_EVENTS, ASSIGNMENTS, NOTIFICATIONS, ESCALATIONS, OVERRIDES])
    try:
        client.wait_until_ready(timeout=60)
        notify.wait_until_ready(timeout=60)
        _print_endpoints(config, tracing_url)
        narrator.say(
            f"{SENDER}: a client asks for help in Den Haag (GM0518). She has worked in salons in "
            "Den Haag and Amsterdam but never registered anywhere: no regional binding. She reads "
            "Spanish best and agrees to text messages."
        )
        contact = notify.seal_contact(case_id, "SMS", DEMO_PHONE)
        narrator.say(
            f"{SENDER} -> notify SealContact: her phone number is sealed with a key of her own "
            f"(key {contact.key_id[:8]}...); the mesh carries only the ciphertext"
        )
        referral = client.create(demo_request(case_id, contact))
        narrator.say(
            f"{SENDER} -> CreateReferral to {RECEIVER}: referral {referral.referral_id} "
            f"for case {case_id}, status {common_pb2.ReferralStatus.Name(referral.status)}"
        )
        timeline = _Timeline(watcher, case_id, narrator, stack)
        timeline.until(_is("assignment"), "the responsible region")
        timeline.until(_is("notification", recipient=RECEIVER), "the notification to the receiving agency")
        to_client = timeline.until(_is("notification", audience=events_pb2.CLIENT), "the message to the client")
        message = _client_message(config, to_client.notification.notification_id)
        if message:
            narrator.say(
                f"client message ({message['language']}, {message['channel']} to {message['to']}), "
                f"from the local outbox {client_outbox_path(config)}:"
            )
            for line in message["text"].strip().splitlines():
                say_safely(f"          {line}")

        narrator.say(
            f"{RECEIVER} does not answer. The stall detector watches the deadlines "
            "(the demo policy counts seconds where the real one counts hours)."
        )
        timeline.until(_is("escalation", level=events_pb2.AGENCY_REMINDER), "the reminder to the agency", 120)
        alert = timeline.until(
            _is("escalation", level=events_pb2.REGION_COORDINATOR), "the alert to the region coordinator", 120
        )
        login = dashboard_login(config, COORDINATOR_REGION)
        narrator.say(f"the alert is live on {login.url}; coordinator {login.username} signs in and takes the case")
        _take_on_dashboard(login, alert.case_id)
        timeline.until(_is("alert_action", action="TAKEN"), "the coordinator's action")
        narrator.say(f"{login.username} owns the case now; the alert stops climbing the ladder")
    finally:
        watcher.close()
        notify.close()
        client.close()


def _take_on_dashboard(login, case_id: str) -> None:
    """Sign in and press "take" on the case's card the way a coordinator does in the browser."""
    base = login.url.removesuffix("/dashboard")
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = urllib.parse.urlencode({"username": login.username, "password": login.password}).encode()
    page = browser.open(f"{base}/login", data=form, timeout=10).read().decode()
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    if token is None:
        raise _DemoFailed("could not sign in to the dashboard")
    form = urllib.parse.urlencode({"csrf": token.group(1)}).encode()
    browser.open(f"{base}/dashboard/cases/{urllib.parse.quote(case_id)}/take", data=form, timeout=10).read()


def _client_message(config, notification_id: str, timeout: float = 30.0) -> dict | None:
    outbox = client_outbox_path(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox.exists():
            for line in outbox.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry.get("notification_id") == notification_id:
                    return entry
        time.sleep(0.3)
    return None


def _describe(topic: str, envelope) -> str:
    kind = envelope.WhichOneof("payload")
    if kind == "referral":
        event = envelope.referral
        return f"Kafka {topic}: {event.event_type} (version {event.version}, {event.sender} -> {event.receiver})"
    if kind == "assignment":
        event = envelope.assignment
        handover = f", handover proposed to {event.handover_to}" if event.handover_to else ""
        lines = [
            f"Kafka {topic}: region service names {event.responsible_region} responsible "
            f"(rule {event.rule}, bound nowhere: {event.bound_nowhere}{handover})",
        ]
        lines.extend(
            f"          explanation for the client ({language}): {event.explanation[language]}"
            for language in ("en", "es")
            if language in event.explanation
        )
        return "\n".join(lines)
    if kind == "escalation":
        event = envelope.escalation
        level = events_pb2.EscalationLevel.Name(event.level)
        late = f", {event.late_seconds:.0f}s late" if event.late else ""
        return f"Kafka {topic}: stall detector escalates to {level} of {event.region} (rule {event.rule}{late})"
    if kind == "alert_action":
        event = envelope.alert_action
        verb = {"ACKNOWLEDGED": "acknowledged", "TAKEN": "took", "RESOLVED": "resolved"}.get(event.action, event.action)
        return f"Kafka {topic}: coordinator {event.coordinator} {verb} the alert"
    if kind == "notification":
        event = envelope.notification
        audience = events_pb2.Audience.Name(event.audience)
        return (
            f"Kafka {topic}: notify service -> {audience} {event.recipient}: "
            f"{event.template} (responsible region {event.responsible_region})"
        )
    return f"Kafka {topic}: {kind}"


if __name__ == "__main__":
    sys.exit(run_demo())
