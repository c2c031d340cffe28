"""CPU per referral from the services' own processes (benchmarks/e2e_cpu.py)."""

import os
import time

import pytest

from benchmarks.e2e_cpu import CLOCK_TICKS, cpu_ms_per_unit, group_cpu_seconds, less_idle, parse_stat, service_of


def test_a_stat_line_is_read_after_the_command_name_even_when_it_holds_spaces_and_parentheses():
    fields_after_name = ["S", "10", "4242"] + ["0"] * 8 + ["150", "50"] + ["0"] * 30
    line = "4243 (python (serve) x) " + " ".join(fields_after_name)
    stat = parse_stat(line)
    assert (stat.pid, stat.process_group, stat.cpu_ticks) == (4243, 4242, 200)


def test_this_process_group_is_seen_using_cpu():
    group = os.getpgid(0)
    before = group_cpu_seconds([group])[group]
    busy_until = time.process_time() + 5 / CLOCK_TICKS
    while time.process_time() < busy_until:
        pass
    assert group_cpu_seconds([group])[group] > before


def test_cpu_per_unit_divides_each_services_delta_and_their_sum():
    before = {"referral": 10.0, "region": 20.0, "notify": 30.0}
    after = {"referral": 11.0, "region": 20.5, "notify": 32.0}
    shares = cpu_ms_per_unit(before, after, units=500)
    assert shares == pytest.approx({"referral": 2.0, "region": 1.0, "notify": 4.0, "total": 7.0})


def test_each_service_can_be_divided_by_what_it_finished_itself():
    before = {"referral": 10.0, "notify": 30.0}
    after = {"referral": 11.0, "notify": 31.0}
    shares = cpu_ms_per_unit(before, after, units={"referral": 400, "notify": 100})
    assert shares == pytest.approx({"referral": 2.5, "notify": 10.0, "total": 12.5})


def test_no_completed_work_gives_no_figure():
    assert cpu_ms_per_unit({"referral": 1.0}, {"referral": 2.0}, units=0) == {}
    assert cpu_ms_per_unit({"referral": 1.0, "notify": 1.0}, {"referral": 2.0, "notify": 2.0}, {"referral": 5}) == {}


def test_replicas_count_for_their_service():
    assert [service_of(name) for name in ("region-2", "notify", "referral-10", "x-y")] == [
        "region",
        "notify",
        "referral",
        "x-y",
    ]


def test_idle_cpu_is_taken_off_each_service_but_never_below_its_first_sample():
    before = {"referral": 10.0, "notify": 30.0}
    after = {"referral": 12.0, "notify": 30.1}
    working = less_idle(before, after, {"referral": 5.0, "notify": 10.0}, seconds=10)
    assert working == pytest.approx({"referral": 11.5, "notify": 30.0})
    assert cpu_ms_per_unit(before, working, units=100) == pytest.approx(
        {"referral": 15.0, "notify": 0.0, "total": 15.0}
    )
