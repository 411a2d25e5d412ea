"""`edgetune fleet`: a heterogeneous fleet of emulated devices against a real coordinator.

The coordinator (the same RoundKeeper and service a server runs, over gRPC on loopback or
in-process) keeps virtual time, which the emulator advances. Each round: the devices online at that
virtual time send heartbeats, the coordinator plans the round, the hosts prepare every assigned
device's work (real training on the shared model), and the answers are delivered in the order they
would reach the coordinator (now + training time + link time on each device's profile). An answer
arriving after the round closed is refused as late, exactly as a slow phone's would be; a device that
drops out never answers; the round closes at its deadline with a quorum.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from coordinator.model_host import TorchHost
from coordinator.rounds import RoundKeeper
from coordinator.server import CoordinatorServer
from coordinator.service import CoordinatorService
from edge_runtime.devices.profiles import builtin_profiles
from edge_runtime.errors import UserError
from edge_runtime.fleet.config import FleetConfig
from edge_runtime.fleet.device_host import DeviceHost
from edge_runtime.fleet.hosts import HostPool, LocalHosts, RayHosts

# Virtual time skipped while no round can open (devices offline, e.g. phones in the daytime).
IDLE_STEP_S = 600.0
MAX_IDLE_S = 7 * 86_400


class VirtualClock:
    """The emulation's time, in seconds since a virtual midnight (the devices' availability follows the time
    of day): the coordinator reads it as its clock; only the emulator moves it, never backwards."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        """The virtual time now, in seconds."""
        return self.now

    def advance_to(self, t: float) -> None:
        """Move the clock to `t` seconds; an earlier `t` leaves it where it is."""
        self.now = max(self.now, t)


def seeded_identities(seed: int):
    """Device ids and tokens from a counter and the seed: the same fleet gets the same ids on any backend."""
    count = 0

    def identity() -> tuple[str, str]:
        nonlocal count
        count += 1
        digest = hashlib.sha256(f"edgetune-fleet:{seed}:{count}".encode()).hexdigest()
        return f"emu{count:05d}-{digest[:16]}", digest[16:]

    return identity


@dataclass
class FleetResult:
    """What a fleet run reports: each round's metrics, each device's account, the initial adapter's
    metrics, wall and virtual seconds, the hosts' peak resident bytes and the lockstep batching counts."""

    rounds: list[dict] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)
    initial: dict = field(default_factory=dict)
    wall_s: float = 0.0
    virtual_s: float = 0.0
    peak_rss_bytes: int = 0
    # Forward passes served in lockstep batches (batch_devices > 1): passes, device passes carried.
    batching: dict = field(default_factory=dict)
    eval_examples: int = 0  # dev examples each accuracy was measured on


class FleetEmulator:
    """Emulated devices on virtual time against a real coordinator, in process or over gRPC on loopback,
    their training hosted here or on Ray actors. Construction replaces an earlier emulation in the same
    state folder: an emulation is a function of its config and seed."""

    def __init__(self, config: FleetConfig, log=print) -> None:
        self.config, self.log = config, log
        self.clock = VirtualClock(config.start_hour * 3600)
        self.host_model = TorchHost(config)
        if Path(config.state_dir).exists():
            # An emulation is a pure function of its config and seed: rerunning it loses nothing.
            log(f"fleet: replacing the earlier emulation in {config.out_dir}")
            shutil.rmtree(config.state_dir)
        self.keeper = RoundKeeper(config, self.host_model, clock=self.clock, log=lambda _: None)
        self.service = CoordinatorService(self.keeper, identities=seeded_identities(config.seed))
        self.server = None
        if config.transport == "grpc":
            from dataclasses import replace

            self.server = CoordinatorServer(
                replace(config, listen="127.0.0.1:0"), self.keeper, service=self.service, drive=False
            ).start()
        self.hosts = self._hosts()
        self.placement: dict[str, int] = {}

    def _client_factory(self):
        if self.server is None:
            from edge_runtime.agent.client import InProcessClient

            service = self.service
            return lambda: InProcessClient(service)
        from edge_runtime.agent.client import GrpcClient

        address = f"127.0.0.1:{self.server.port}"
        return lambda: GrpcClient(address, log=lambda _: None)

    def _hosts(self) -> HostPool:
        c = self.config
        kwargs = dict(
            client_factory=self._client_factory(),
            data_dir=c.data_dir,
            seed=c.seed,
            threads=c.threads,
            device=c.device,
            gpu_memory_share=c.gpu_memory_share,
            batch_devices=c.batch_devices,
        )
        if c.backend == "ray":
            return RayHosts(c.ray_actors, c.ray_actor_cpus, c.ray_address, kwargs)
        return LocalHosts(DeviceHost(**kwargs, shared=self.host_model))

    def _profiles(self) -> list[str]:
        names = list(self.config.profiles) or sorted(builtin_profiles())
        return [names[i % len(names)] for i in range(self.config.devices)]

    def run(self) -> FleetResult:
        """Join every device, then run rounds until the coordinator has finished them all; a UserError when no
        round could open for a virtual week."""
        started = time.perf_counter()
        result = FleetResult(initial=self.keeper.round_metrics()[0], eval_examples=len(self.host_model.eval_examples))
        with tqdm(total=self.config.devices, desc="devices joining", disable=not self.config.progress) as bar:
            for index, profile in enumerate(self._profiles()):
                host = index % self.hosts.size
                self.placement[self.hosts.call(host, "add", index, profile)] = host
                bar.update(1)
        # Registering is not being online: from here on only heartbeats say who is.
        self.clock.advance_to(self.clock.now + self.config.device_timeout_s + 1)
        idle_since = self.clock.now
        with tqdm(
            total=self.config.rounds,
            desc=f"{self.config.planner} rounds",
            unit="round",
            disable=not self.config.progress,
        ) as bar:
            while not self.keeper.finished:
                self.hosts.call_all("heartbeat", [(self.clock.now,)] * self.hosts.size)
                self.keeper.tick()
                if self.keeper.open_round is None:
                    if self.clock.now - idle_since > MAX_IDLE_S:
                        raise UserError(f"no round could open for a virtual week: {self.keeper.waiting_note}")
                    self.clock.advance_to(self.clock.now + IDLE_STEP_S)
                    continue
                record = self._round()
                result.rounds.append(record)
                idle_since = self.clock.now
                bar.set_postfix(acc=f"{record['eval_accuracy']:.3f}", loss=f"{record['train_loss']:.3f}")
                bar.update(1)
        result.devices = [d for part in self.hosts.call_all("report", [()] * self.hosts.size) for d in part]
        result.devices.sort(key=lambda d: d["index"])
        result.wall_s = time.perf_counter() - started
        result.virtual_s = self.clock.now - self.config.start_hour * 3600
        result.peak_rss_bytes = max(self.hosts.call_all("resident_bytes", [()] * self.hosts.size))
        per_host = self.hosts.call_all("batching", [()] * self.hosts.size)
        result.batching = {
            "passes": sum(h["passes"] for h in per_host),
            "device_passes": sum(h["device_passes"] for h in per_host),
            "unbatchable": next((h["unbatchable"] for h in per_host if h.get("unbatchable")), None),
        }
        return result

    def _round(self) -> dict:
        wall = time.perf_counter()
        open_ = self.keeper.open_round
        round_, opened, deadline = open_.round, open_.opened_at, open_.deadline_at
        by_host: list[list[str]] = [[] for _ in range(self.hosts.size)]
        for device_id in open_.devices:
            by_host[self.placement[device_id]].append(device_id)
        preparing = time.perf_counter()
        prepared = [
            w for part in self.hosts.call_all("prepare", [(ids, opened, round_) for ids in by_host]) for w in part
        ]
        prepare_wall = time.perf_counter() - preparing
        outcomes: dict[str, int] = {}
        for work in sorted((w for w in prepared if w.kind in ("task", "refused")), key=lambda w: w.ready_at):
            self.clock.advance_to(work.ready_at)
            self.keeper.tick()  # closes the round if its deadline passed with a quorum
            outcome = self.hosts.call(self.placement[work.device_id], "deliver", work.device_id)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for t in (deadline, deadline + self.config.round_deadline_s):
            if self.keeper.open_round is None or self.keeper.open_round.round != round_:
                break
            self.clock.advance_to(t)
            self.keeper.tick()
        metrics = next(m for m in reversed(self.keeper.round_metrics()) if m["round"] == round_)
        for work in prepared:
            if work.kind in ("offline", "dropped"):
                outcomes[work.kind] = outcomes.get(work.kind, 0) + 1
        return {
            **metrics,
            "outcomes": outcomes,
            "wall_s": time.perf_counter() - wall,
            "prepare_wall_s": prepare_wall,
            "device_steps": sum(w.steps for w in prepared),
            "virtual_s": self.clock.now - opened,
            "train_virtual_s": max((w.train_seconds for w in prepared), default=0.0),
        }

    def close(self) -> None:
        """Stop the hosts and the coordinator (its server, or the round keeper's hold on the state folder)."""
        self.hosts.close()
        if self.server is not None:
            self.server.stop()
        else:
            self.keeper.close()


def run_fleet(config: FleetConfig, log=print) -> FleetResult:
    """Emulate the fleet `config` describes; the emulator is closed whether or not the run finishes."""
    emulator = FleetEmulator(config, log)
    try:
        return emulator.run()
    finally:
        emulator.close()


def as_dict(result: FleetResult) -> dict:
    """The result as plain dicts and lists, for the JSON report."""
    return asdict(result)
