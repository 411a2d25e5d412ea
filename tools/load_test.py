"""Load test: one coordinator and many emulated agents over gRPC on loopback.

    OMP_NUM_THREADS=1 python tools/load_test.py --agents 1000 \
        --out docs/benchmarks/load/load-1000.json

The coordinator is the real `edgetune coordinator` in its own process (so its resident memory is
its own), training tiny-bert's adapter with Spry. The agents are light: asyncio tasks in this
process, one gRPC channel (one connection) each, that do what an agent does on the wire and
nothing else: register, heartbeat at the interval the coordinator gives, poll for a task, fetch
the state of their slices, upload a small update of the right shapes, until the coordinator says
the rounds are done. Training is left out on purpose: what is measured is the coordinator.

Reported: per-RPC latency (p50/p99/max, seen by the agents), the coordinator's resident memory
idle, with every agent registered and holding its task, at its peak and at the end, and from those
its memory per device; rounds closed and updates accepted from the coordinator's own ledger.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil
from tqdm import tqdm

from edge_runtime.config import add_config_arguments, config_from_args, defaults, setting
from edge_runtime.errors import UserError
from edge_runtime.options import Heartbeat, Model, Results, Rounds
from edge_runtime.protocol import DEVICE_KEY, PROTOCOL_KEY, PROTOCOL_VERSION, TOKEN_KEY, pb, rpc
from edge_runtime.protocol.tensors import from_chunks, to_chunks
from edge_runtime.seeded.draws import FINGERPRINT

PROFILE = pb.DeviceProfile(
    name="load-test",
    device_class="phone",
    memory_cap_bytes=4 * 10**9,
    gflops_fp32=50,
    uplink_mbps=10,
    downlink_mbps=50,
    latency_ms=30,
    precisions=["fp32"],
)


# The model's adapter gives the shapes the agents upload.
@dataclass
@defaults(model="tiny-bert", rounds=1, heartbeat_s=5.0, out="load-test.json")
class LoadConfig(Results, Heartbeat, Rounds, Model):
    agents: int = setting("emulated agents", 1000)
    timeout_s: float = setting("give up after this long", 600.0)

    def validate(self) -> None:
        if self.agents < 1 or self.rounds < 1:
            raise UserError("agents and rounds must be at least 1")
        if not (self.heartbeat_s > 0 and self.timeout_s > 0):
            raise UserError("heartbeat_s and timeout_s must be positive")


def _quantile_ms(values: list[float], q: float) -> float:
    return 1e3 * values[min(len(values) - 1, int(q * len(values)))]


class Latencies:
    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def summary(self) -> dict[str, dict]:
        out = {}
        for name in sorted(set(self.seconds) | set(self.errors)):
            values = sorted(self.seconds.get(name, []))
            out[name] = {
                "calls": len(values),
                "errors": dict(self.errors.get(name, {})),
                "p50_ms": _quantile_ms(values, 0.5) if values else None,
                "p99_ms": _quantile_ms(values, 0.99) if values else None,
                "max_ms": 1e3 * values[-1] if values else None,
                "mean_ms": 1e3 * statistics.fmean(values) if values else None,
            }
        return out


class FleetOfStubs:
    """The emulated agents. `holding_task` is set once every agent has been given its first task,
    the moment the coordinator holds the whole fleet and an open round."""

    def __init__(self, address: str, agents: int, progress: bool = False) -> None:
        self.address, self.agents = address, agents
        self.latencies = Latencies()
        self.accepted = 0
        self.rejections: list[str] = []
        self._tasks_held = 0
        self.holding_task = threading.Event()
        self._progress = tqdm(total=agents, desc="agents done", disable=not progress)

    async def _timed(self, name: str, call):
        started = time.perf_counter()
        while True:
            try:
                result = await call()
                self.latencies.seconds[name].append(time.perf_counter() - started)
                return result
            except grpc.aio.AioRpcError as error:
                self.latencies.errors[name][error.code().name] += 1
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.5)  # a coordinator still starting, or overloaded: try again
                started = time.perf_counter()

    async def _agent(self, stop: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = rpc.CoordinatorStub(channel)
            reply = await self._timed(
                "Register",
                lambda: stub.Register(
                    pb.RegisterRequest(
                        protocol_version=PROTOCOL_VERSION,
                        profile=PROFILE,
                        examples=100,
                        direction_fingerprint=FINGERPRINT,
                    )
                ),
            )
            metadata = ((DEVICE_KEY, reply.device_id), (TOKEN_KEY, reply.token), (PROTOCOL_KEY, str(PROTOCOL_VERSION)))
            beating = asyncio.create_task(self._beat(stub, metadata, reply.heartbeat_interval_s, stop))
            try:
                await self._work(stub, metadata)
            finally:
                beating.cancel()
        self._progress.update()

    async def _beat(self, stub, metadata, interval: float, stop: asyncio.Event) -> None:
        # Spread over the interval, as devices that joined at different times would be.
        await asyncio.sleep(np.random.default_rng().uniform(0, interval))
        while not stop.is_set():
            await self._timed("Heartbeat", lambda: stub.Heartbeat(pb.HeartbeatRequest(), metadata=metadata))
            await asyncio.sleep(interval)

    async def _work(self, stub, metadata) -> None:
        first = True
        while True:
            reply = await self._timed("GetTask", lambda: stub.GetTask(pb.GetTaskRequest(), metadata=metadata))
            kind = reply.WhichOneof("reply")
            if kind == "done":
                return
            if kind == "wait":
                await asyncio.sleep(reply.wait.retry_after_s)
                continue
            if first:
                first = False
                self._tasks_held += 1
                if self._tasks_held == self.agents:
                    self.holding_task.set()
            await self._upload(stub, metadata, reply.task)

    async def _upload(self, stub, metadata, task: pb.Task) -> None:
        async def fetch():
            return [
                chunk async for chunk in stub.FetchState(pb.FetchStateRequest(tensors=task.tensors), metadata=metadata)
            ]

        state = from_chunks(await self._timed("FetchState", fetch), 2**30)
        rng = np.random.default_rng(task.seed)
        deltas = {name: (1e-3 * rng.standard_normal(value.shape)).astype(np.float32) for name, value in state.items()}
        header = pb.UpdateHeader(
            task_id=task.task_id,
            round=task.round,
            examples=task.batch_size,
            steps=1,
            loss_before=0.7,
            loss_after=0.69,
            train_seconds=0.1,
        )
        chunks = [pb.UpdateChunk(header=header)] + [pb.UpdateChunk(tensor=c) for c in to_chunks(deltas)]
        answer = await self._timed("SubmitUpdate", lambda: stub.SubmitUpdate(iter(chunks), metadata=metadata))
        if answer.accepted:
            self.accepted += 1
        else:
            self.rejections.append(answer.reason)

    async def run(self, timeout_s: float) -> None:
        stop = asyncio.Event()
        try:
            await asyncio.wait_for(asyncio.gather(*(self._agent(stop) for _ in range(self.agents))), timeout_s)
        finally:
            stop.set()
            self._progress.close()


class RssSampler:
    """Resident memory of another process, sampled every `every_s` from a thread."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.last = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)
        self._thread.start()

    def _sample(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                if self.process.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped: it reads as 0
                    return
                self.last = self.process.memory_info().rss
            except psutil.Error:  # the coordinator finished and exited
                return
            self.peak = max(self.peak, self.last)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_coordinator(config: LoadConfig, folder: Path, port: int) -> subprocess.Popen:
    args = [
        "coordinator",
        "--listen",
        f"127.0.0.1:{port}",
        "--state-dir",
        str(folder / "coordinator"),
        "--model",
        config.model,
        "--rounds",
        str(config.rounds),
        "--min-devices",
        str(config.agents),
        "--local-steps",
        "1",
        "--batch-size",
        "1",
        "--max-length",
        "32",
        "--quorum",
        "1.0",
        "--round-deadline-s",
        str(config.timeout_s),
        "--device-timeout-s",
        str(6 * config.heartbeat_s),
        "--heartbeat-s",
        str(config.heartbeat_s),
        "--eval-examples",
        "16",
        "--train-probe-examples",
        "16",
        "--progress",
        "false",
    ]
    log = open(folder / "coordinator.log", "w")
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", *args], stdout=log, stderr=subprocess.STDOUT)


def _wait_serving(address: str, process: subprocess.Popen, timeout_s: float) -> None:
    with grpc.insecure_channel(address) as channel:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the coordinator exited with {process.returncode} before serving")
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"the coordinator did not serve on {address} within {timeout_s:.0f} s")


def _ledger_counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        closed = db.execute("SELECT COUNT(*) FROM rounds WHERE status = 'closed'").fetchone()[0]
        updates = db.execute("SELECT COUNT(*) FROM updates").fetchone()[0]
        devices = db.execute("SELECT COUNT(*) FROM devices").fetchone()[0]
    finally:
        db.close()
    return {"rounds_closed": closed, "updates_in_ledger": updates, "devices_in_ledger": devices}


def run(config: LoadConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgetune-load-") as tmp:
        folder, port = Path(tmp), _free_port()
        address = f"127.0.0.1:{port}"
        started = time.perf_counter()
        coordinator = _start_coordinator(config, folder, port)
        try:
            _wait_serving(address, coordinator, 120)
            time.sleep(1.0)  # let the model load settle before the idle reading
            sampler = RssSampler(coordinator.pid)
            idle = sampler.process.memory_info().rss
            fleet = FleetOfStubs(address, config.agents, config.progress)
            holding = {}

            def note_holding() -> None:
                if fleet.holding_task.wait(config.timeout_s):
                    holding["rss"], holding["at_s"] = sampler.process.memory_info().rss, time.perf_counter() - started

            threading.Thread(target=note_holding, daemon=True).start()
            fleet_started = time.perf_counter()
            asyncio.run(fleet.run(config.timeout_s))
            fleet_s = time.perf_counter() - fleet_started
            exit_code = coordinator.wait(timeout=60)
            sampler.stop()
        finally:
            if coordinator.poll() is None:
                coordinator.kill()
        log_tail = (folder / "coordinator.log").read_text()[-2000:]
        if exit_code != 0:
            raise RuntimeError(f"the coordinator exited with {exit_code}:\n{log_tail}")
        ledger_path = folder / "coordinator" / "ledger.sqlite"
        result = {
            "config": asdict(config),
            "fleet_seconds": fleet_s,
            "updates_accepted": fleet.accepted,
            "rejections": fleet.rejections[:10],
            **_ledger_counts(ledger_path),
            "ledger_bytes": sum(p.stat().st_size for p in ledger_path.parent.glob("ledger.sqlite*")),
            "rpc": fleet.latencies.summary(),
            "coordinator_rss": {
                "idle_bytes": idle,
                "holding_fleet_bytes": holding.get("rss"),
                "peak_bytes": sampler.peak,
                "last_bytes": sampler.last,
            },
            "coordinator_bytes_per_device": (holding["rss"] - idle) / config.agents if holding else None,
            "machine": "shared 2-core CPU box; agents and coordinator on the same cores",
        }
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(parser, LoadConfig)
    try:
        config = config_from_args(LoadConfig, parser.parse_args(argv))
    except UserError as error:
        parser.exit(2, f"load_test: error: {error}\n")
    result = run(config)
    if config.out:
        Path(config.out).parent.mkdir(parents=True, exist_ok=True)
        Path(config.out).write_text(json.dumps(result, indent=2) + "\n")
    rpc_lines = [
        f"  {name}: {s['calls']} calls, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms"
        for name, s in result["rpc"].items()
        if s["calls"]
    ]
    rss = result["coordinator_rss"]
    print(
        f"{config.agents} agents: {result['rounds_closed']}/{config.rounds} rounds closed, "
        f"{result['updates_accepted']} updates accepted in {result['fleet_seconds']:.1f} s; coordinator RSS idle "
        f"{rss['idle_bytes'] / 2**20:.0f} MiB, peak {rss['peak_bytes'] / 2**20:.0f} MiB, "
        f"{(result['coordinator_bytes_per_device'] or 0) / 1024:.1f} KiB per device\n" + "\n".join(rpc_lines)
    )


if __name__ == "__main__":
    main()
