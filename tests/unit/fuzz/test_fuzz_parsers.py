"""The in-process part of `make fuzz`, small: every decoder and parser refuses hostile input
with its own error type and never crashes; the flood's records are malformed for every consumer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.fuzz import malformed_records
from benchmarks.fuzz_parsers import run_all
from meshkernel.envelope import PAYLOAD_KINDS, MalformedEvent, decode


def test_no_parser_crashes_on_generated_and_mutated_input():
    tally = run_all(examples=25)

    assert [vars(crash) for crash in tally.crashes] == []
    assert len(tally.inputs) == 8 and all(count == 25 for count in tally.inputs.values())


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31))
def test_every_flood_record_is_refused_by_every_consumer(seed):
    for value in malformed_records(50, seed):
        for expect in (None, *PAYLOAD_KINDS):
            with pytest.raises(MalformedEvent):
                decode(value, expect=expect)
