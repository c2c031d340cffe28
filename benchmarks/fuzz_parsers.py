"""Property-based hostile input for every decoder and parser of the mesh, in process.

Each target takes generated input (random bytes or text, and mutations of a valid seed, so
the inputs reach past the first check) and must either accept it or refuse it with the
error type it documents; any other exception is a crash. Used by `make fuzz`
(benchmarks/fuzz.py) and by the unit tests with a small number of examples.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshcli.demo import DEMO_ESCALATION_POLICY, demo_request
from meshkernel.envelope import PAYLOAD_KINDS, MalformedEvent, decode, new_envelope
from referralmesh.v1 import common_pb2, events_pb2
from services.region.cli import run_resolve
from services.region.domain.errors import InvalidInput, PolicyError
from services.region.domain.escalation.policy import build_escalation_policy
from services.region.domain.json_io import parse_request
from services.region.domain.policy import build_policy, read_policy_file

REGION_POLICY = Path(__file__).resolve().parents[1] / "services" / "region" / "config" / "regions.yaml"
FACTS_SEED = {
    "asked_in": "GM0518",
    "service": "shelter",
    "decision_date": "2026-03-01",
    "current_region": None,
    "facts": {
        "residence": [{"municipality": "GM0363", "from": "2020-01-01", "to": None, "registered": True}],
        "work": [{"municipality": "GM0518", "from": "2025-03-01", "to": "2025-12-31"}],
        "grew_up_in": ["GM0344"],
        "family_in": [],
    },
}

json_leaves = (
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) | st.text(max_size=40)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw, seed: Any, steps: int = 3):
    """The seed with a few of its values replaced, keys dropped or added, lists emptied."""
    data = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, steps))):
        paths = list(_paths(data))
        if not paths:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent, key = _resolve(data, path)
        if parent is None:
            return draw(json_values)
        action = draw(st.sampled_from(("replace", "drop", "add", "retype")))
        if action == "drop" and isinstance(parent, dict):
            parent.pop(key, None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(json_values)
        elif action == "retype":
            parent[key] = draw(st.sampled_from(([], {}, "", 0, None, True, -1, "9999-99-99", "2026-02-30")))
        else:
            parent[key] = draw(json_values)
    return data


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


def _resolve(data, path):
    if not path:
        return None, None
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    return parent, path[-1]


def _valid_envelopes() -> list[bytes]:
    """One valid record of every payload kind, as seeds for byte-level mutation."""
    payloads: dict[str, Any] = {
        "referral": events_pb2.ReferralEvent(
            referral_id="r-1",
            event_type="ReferralRequested",
            version=1,
            sender="exit-the-hague",
            receiver="shelter-utrecht",
            need_domains=["shelter"],
            asked_in="GM0518",
            facts=demo_request("c-1").facts,
        ),
        "assignment": events_pb2.AssignmentEvent(referral_id="r-1", responsible_region="GM0518", rule="asked_in"),
        "escalation": events_pb2.EscalationEvent(
            escalation_id="e-1", referral_id="r-1", region="GM0518", rule="not_acknowledged"
        ),
        "notification": events_pb2.NotificationEvent(
            notification_id="n-1", referral_id="r-1", recipient="x", template="referral_assigned"
        ),
        "override": events_pb2.CoordinatorOverride(referral_id="r-1", region="GM0363", reason_code="other"),
        "alert_action": events_pb2.AlertAction(escalation_id="e-1", referral_id="r-1", action="RESOLVED"),
        "client_erased": events_pb2.ClientErased(requested_by="exit-the-hague"),
    }
    return [
        new_envelope(case_id="c-1", producer="fuzz", event_id=f"ev-{kind}", **{kind: payload}).SerializeToString()
        for kind, payload in payloads.items()
    ]


VALID_ENVELOPES = _valid_envelopes()


@st.composite
def mutated_bytes(draw, seeds: list[bytes]):
    """A valid record with bytes flipped, cut, inserted or spliced from another."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("flip", "cut", "insert", "splice")))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            data = data[:position] if draw(st.booleans()) else data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(max_size=8))
        else:
            data += draw(st.sampled_from(seeds))[draw(st.integers(0, 20)) :]
    return bytes(data)


record_bytes = st.binary(max_size=300) | mutated_bytes(VALID_ENVELOPES)


@dataclass
class Crash:
    target: str
    error: str
    sample: str


@dataclass
class Tally:
    inputs: dict[str, int] = field(default_factory=dict)
    crashes: list[Crash] = field(default_factory=list)

    def guard(self, target: str, refusals: tuple[type[BaseException], ...], call: Callable[[], Any], sample) -> None:
        self.inputs[target] = self.inputs.get(target, 0) + 1
        try:
            call()
        except refusals:
            pass
        except Exception as error:
            if len(self.crashes) < 50:
                self.crashes.append(
                    Crash(target, "".join(traceback.format_exception_only(error)).strip()[:300], repr(sample)[:300])
                )


def _decode_any(raw: bytes) -> None:
    decode(raw)
    for kind in PAYLOAD_KINDS:
        decode(raw, expect=kind)


def _policy_from_text(text: str, loader: Callable[[Any, str], Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8", errors="surrogatepass") as handle:
        handle.write(text)
        handle.flush()
        loader(read_policy_file(handle.name), handle.name)


def _cli_resolve(text: str) -> None:
    code = run_resolve(["-"], io.StringIO(text), io.StringIO(), io.StringIO())
    if code not in (0, 1, 2, 3, 4):
        raise AssertionError(f"unexpected exit code {code}")


def _facts_message(raw: bytes) -> None:
    common_pb2.BindingFacts.FromString(raw)


def targets(tally: Tally) -> dict[str, Callable[[int], None]]:
    """name -> run(examples): each runs one hypothesis property over the target."""
    region_seed = yaml.safe_load(REGION_POLICY.read_text(encoding="utf-8"))
    escalation_seed = yaml.safe_load(DEMO_ESCALATION_POLICY.read_text(encoding="utf-8"))
    region_policy = lambda data, source="<fuzz>": build_policy(data, source)  # noqa: E731
    from google.protobuf.message import DecodeError

    def prop(name: str, strategy, refusals, call):
        def run(examples: int) -> None:
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=False,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def property_(sample):
                tally.guard(name, refusals, lambda: call(sample), sample)

            property_()

        return run

    return {
        "event envelope (every payload kind)": prop("event envelope", record_bytes, (MalformedEvent,), _decode_any),
        "binding facts JSON (parse_request)": prop(
            "binding facts JSON", mutated(FACTS_SEED, 4) | json_values, (InvalidInput,), parse_request
        ),
        "binding facts protobuf": prop(
            "binding facts protobuf",
            st.binary(max_size=200) | mutated_bytes([demo_request("c").facts.SerializeToString()]),
            (DecodeError,),
            _facts_message,
        ),
        "CLI JSON (mesh region resolve)": prop(
            "CLI JSON",
            st.text(max_size=200) | mutated(FACTS_SEED, 4).map(lambda d: json.dumps(d, default=str)),
            (),
            _cli_resolve,
        ),
        "region policy (data)": prop("region policy", mutated(region_seed, 4), (PolicyError,), region_policy),
        "region policy (YAML text)": prop(
            "region policy YAML",
            st.text(max_size=300) | mutated(region_seed, 3).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
            (PolicyError,),
            lambda text: _policy_from_text(text, region_policy),
        ),
        "escalation policy (data)": prop(
            "escalation policy", mutated(escalation_seed, 4), (PolicyError,), lambda data: build_escalation_policy(data)
        ),
        "escalation policy (YAML text)": prop(
            "escalation policy YAML",
            st.text(max_size=300) | mutated(escalation_seed, 3).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
            (PolicyError,),
            lambda text: _policy_from_text(text, lambda data, source: build_escalation_policy(data, source)),
        ),
    }


def run_all(examples: int) -> Tally:
    tally = Tally()
    for run in targets(tally).values():
        run(examples)
    return tally
