"""Where the samples of a py-spy profile went (benchmarks/e2e_profile.py)."""

from benchmarks.e2e_profile import area_of, frame_parts, parse_collapsed, summarise

SITE = "/x/.venv/lib/python3.11/site-packages"
STACKS = [
    f"<module> (meshcli/main.py:10);run (asyncio/base_events.py:600);flush ({SITE}/sqlalchemy/orm/session.py:4000) 6",
    "<module> (meshcli/main.py:10);run (asyncio/base_events.py:600);handle (/w/services/notify/application.py:80) 3",
    "<module> (meshcli/main.py:10);run (/usr/lib/python3.11/asyncio/base_events.py:600) 1",
    "garbage",
]


def test_collapsed_stacks_are_read_outermost_frame_first():
    stacks = parse_collapsed(STACKS)
    assert len(stacks) == 3
    assert stacks[0][0][0] == "<module> (meshcli/main.py:10)"
    assert stacks[0][1] == 6


def test_a_frame_names_its_function_and_file():
    assert frame_parts("send (aiokafka/producer/producer.py:400)") == ("send", "aiokafka/producer/producer.py")
    assert frame_parts("<lambda> (x.py)") == ("<lambda>", "x.py")


def test_code_is_grouped_by_package_project_file_or_standard_module():
    assert area_of(f"{SITE}/sqlalchemy/orm/session.py") == "sqlalchemy"
    assert area_of("/w/services/notify/application.py") == "services/notify/application.py"
    assert area_of("/usr/lib/python3.11/asyncio/base_events.py") == "asyncio"
    assert area_of("/usr/lib/python3.11/json.py") == "json"


def test_shares_are_of_all_samples_own_time_at_the_leaf_and_inclusive_once_per_stack():
    summary = summarise(parse_collapsed(STACKS))
    assert summary["samples"] == 10
    assert summary["waiting_percent"] == 0.0
    assert dict(summary["own_by_area"]) == {"sqlalchemy": 60.0, "services/notify/application.py": 30.0, "asyncio": 10.0}
    inclusive = dict(summary["inclusive_by_function"])
    assert inclusive["<module> (meshcli/main.py)"] == 100.0


def test_short_file_names_as_py_spy_writes_them_are_grouped_too():
    assert area_of("aiokafka/producer/producer.py") == "aiokafka"
    assert area_of("threading.py") == "threading"
    assert area_of("services/region/adapters/streams.py") == "services/region/adapters/streams.py"


def test_threads_waiting_for_work_are_counted_apart_from_the_busy_shares():
    stacks = parse_collapsed(
        [
            "run (asyncio/base_events.py:1);EpollSelector.select (selectors.py:468) 5",
            "run (threading.py:1);_worker (concurrent/futures/thread.py:81) 3",
            "run (asyncio/base_events.py:1);handle (services/notify/application.py:80) 2",
        ]
    )
    summary = summarise(stacks)
    assert summary["waiting_percent"] == 80.0
    assert dict(summary["own_by_area"]) == {"services/notify/application.py": 100.0}
