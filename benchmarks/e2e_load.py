"""Open-loop CreateReferral load for `make bench-e2e`, free of coordinated omission.

Every request has a scheduled send time fixed in advance by the offered rate
(`Schedule.due`). Latency is counted from that scheduled time, not from the moment the call
actually went out, so a mesh (or a load generator) that falls behind shows it in the figures
instead of quietly slowing the load down. A request that could not go out within
`ON_SCHEDULE_TOLERANCE_S` of its schedule (the in-flight cap was reached, the event loop was
late) is still sent, and counted as "not sent on schedule".

The generator runs in a process of its own (`LoadProcess`), so the benchmark's Kafka reader in
the parent never takes the generator's interpreter lock; both use CLOCK_MONOTONIC
(`time.monotonic`), which is one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from typing import Any

ON_SCHEDULE_TOLERANCE_S = 0.010
MAX_IN_FLIGHT = 512


@dataclass(frozen=True)
class Schedule:
    """`rate` requests a second for `seconds`, the first due at `start` (monotonic seconds)."""

    rate: float
    seconds: float
    start: float
    prefix: str

    @property
    def planned(self) -> int:
        return int(self.rate * self.seconds)

    def due(self, index: int) -> float:
        return self.start + index / self.rate

    def case_id(self, index: int) -> str:
        return f"{self.prefix}{index:07d}"

    def due_by(self, moment: float) -> int:
        """How many requests are due at or before `moment`."""
        if moment < self.start:
            return 0
        return min(self.planned, int((moment - self.start) * self.rate) + 1)


@dataclass
class OnScheduleTally:
    """Counts requests that went out later than `tolerance` after their scheduled time."""

    tolerance: float = ON_SCHEDULE_TOLERANCE_S
    sent: int = 0
    late: int = 0
    worst_lateness: float = 0.0

    def note(self, due: float, sent_at: float) -> None:
        self.sent += 1
        lateness = sent_at - due
        if lateness > self.tolerance:
            self.late += 1
        self.worst_lateness = max(self.worst_lateness, lateness)


@dataclass
class LoadResult:
    """What one step of load did: case id -> scheduled time of every request sent."""

    scheduled: dict[str, float] = field(default_factory=dict)
    not_on_schedule: int = 0
    worst_lateness_ms: float = 0.0
    errors: int = 0
    stopped_early: bool = False
    generator_cpu_s: float = 0.0


class Channels:
    """One gRPC channel per referral address, opened once and kept for every step: a step's
    first requests must not wait for a connection (the warm-up opens them)."""

    def __init__(self) -> None:
        self.open: dict[str, Any] = {}

    async def stubs(self, addresses: list[str]) -> list[Any]:
        from meshkernel.tls import open_channel
        from referralmesh.v1 import referral_service_pb2_grpc as api_grpc

        for address in addresses:
            if address not in self.open:
                channel = open_channel(address, None, aio=True)  # a local-mode mesh
                await asyncio.wait_for(channel.channel_ready(), timeout=60)
                self.open[address] = channel
        return [api_grpc.ReferralServiceStub(self.open[address]) for address in addresses]

    async def close(self) -> None:
        for channel in self.open.values():
            await channel.close()


async def drive(stubs: list[Any], schedule: Schedule, stop: Any) -> LoadResult:
    """Send schedule.planned CreateReferral calls, round-robin over `stubs`, each at its
    scheduled time or as soon after it as the in-flight cap allows. `stop` (an Event) ends
    the sending early; calls already sent are awaited."""
    import grpc

    from meshcli.demo import SENDER, demo_request
    from meshkernel.callers import DEV_AGENCY_HEADER

    result = LoadResult()
    tally = OnScheduleTally()
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    metadata = ((DEV_AGENCY_HEADER, SENDER),)

    async def one(stub: Any, case_id: str) -> None:
        try:
            await stub.CreateReferral(demo_request(case_id), metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError:
            result.errors += 1
        finally:
            in_flight.release()

    tasks = []
    for index in range(schedule.planned):
        if index % 16 == 0 and stop.is_set():
            result.stopped_early = True
            break
        due = schedule.due(index)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        tally.note(due, time.monotonic())
        case_id = schedule.case_id(index)
        result.scheduled[case_id] = due
        tasks.append(asyncio.create_task(one(stubs[index % len(stubs)], case_id)))
    await asyncio.gather(*tasks)
    result.not_on_schedule = tally.late
    result.worst_lateness_ms = round(tally.worst_lateness * 1000, 1)
    return result


async def _serve_steps(requests: Any, results: Any, stop: Any) -> None:
    channels = Channels()
    loop = asyncio.get_running_loop()
    try:
        while (request := await loop.run_in_executor(None, requests.get)) is not None:
            addresses, schedule = request
            cpu_before = time.process_time()
            outcome = await drive(await channels.stubs(addresses), schedule, stop)
            outcome.generator_cpu_s = round(time.process_time() - cpu_before, 3)
            results.put(outcome)
    finally:
        await channels.close()


def _serve(requests: Any, results: Any, stop: Any) -> None:
    """The generator process: one event loop, one step per request until it receives None."""
    asyncio.run(_serve_steps(requests, results, stop))


class LoadProcess:
    """A load generator in its own process, reused for every step of a run."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # no forked copy of the parent's threads
        self.requests = context.Queue()
        self.results = context.Queue()
        self.stop = context.Event()
        self.process = context.Process(target=_serve, args=(self.requests, self.results, self.stop), daemon=True)
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def begin(self, addresses: list[str], schedule: Schedule) -> None:
        self.stop.clear()
        self.requests.put((addresses, schedule))

    def poll(self, timeout: float) -> LoadResult | None:
        """The step's result once its calls are done, else None after `timeout` seconds."""
        try:
            result: LoadResult = self.results.get(timeout=timeout)
        except queue.Empty:
            return None
        return result

    def close(self) -> None:
        self.requests.put(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
