"""Pieces the reliability tests share: a clock the test moves, device identities that repeat from
run to run (so two runs of a federation are the same run, bit for bit), a snapshot of everything
durable a coordinator holds, an in-process stand-in for a crash, and a restart on the same folder."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

from coordinator import faults
from coordinator.rounds import RoundKeeper
from coordinator.server import CoordinatorServer
from coordinator.service import CoordinatorService
from edge_runtime.protocol import pb
from tests.federation import LAPTOP, Federation, small_config


class ManualClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def repeatable_identities():
    numbers = itertools.count()

    def identity() -> tuple[str, str]:
        number = next(numbers)
        return f"device-{number:03d}", f"token-{number:03d}-not-secret-in-tests"

    return identity


def small_federation(
    folder, devices: int = 3, clock=None, profile: pb.DeviceProfile = LAPTOP, **overrides
) -> Federation:
    """Two short Spry rounds of tiny-bert: every device must answer before a round closes."""
    config = small_config(folder, **{"rounds": 2, "local_steps": 2, "quorum": 1.0, **overrides})
    return Federation(
        config, devices=devices, profile=profile, clock=clock or ManualClock(), identities=repeatable_identities()
    )


def serve(federation: Federation, port: int = 0) -> CoordinatorServer:
    """The federation's coordinator behind a real gRPC server; rounds move only when the test ticks."""
    config = replace(federation.config, listen=f"127.0.0.1:{port}")
    return CoordinatorServer(config, federation.keeper, service=federation.service, drive=False).start()


def restart(federation: Federation, clock=None) -> RoundKeeper:
    """A new coordinator on the same folder, as after kill -9; the agents go on talking to it."""
    federation.keeper.close()
    keeper = RoundKeeper(federation.config, federation.host, clock=clock or ManualClock(), log=lambda _: None)
    service = CoordinatorService(keeper, repeatable_identities())
    for agent in federation.agents:
        agent.client.service = service
    federation.keeper, federation.service = keeper, service
    return keeper


def snapshot(keeper: RoundKeeper) -> dict:
    """Everything durable or merged: equal snapshots mean a call changed nothing that matters."""
    ledger = keeper.ledger
    rounds = ledger.rounds()
    return {
        "devices": ledger.devices(),
        "rounds": rounds,
        "checkpoints": ledger.checkpoints(),
        "assignments": {r.round: ledger.assignments(r.round) for r in rounds},
        "updates": {r.round: ledger.updates(r.round) for r in rounds},
        "metrics": ledger.metrics(),
        "version": keeper.version,
        "answered": keeper.open_round.answered if keeper.open_round else None,
        "params": {name: value.tobytes() for name, value in keeper.params.items()},
    }


def accepted_updates(keeper: RoundKeeper) -> set[tuple[int, str, bytes | None]]:
    return {(u.round, u.device_id, u.tensors) for r in keeper.ledger.rounds() for u in keeper.ledger.updates(r.round)}


class SimulatedCrash(BaseException):
    """What a crash point raises in process instead of os._exit: nothing after it runs, and the
    test then drops the coordinator object as a kill drops the process (BaseException, so no
    `except Exception` on the way can swallow it)."""


def arm_crash(monkeypatch, point: str) -> None:
    def crash() -> None:
        raise SimulatedCrash(point)

    monkeypatch.setenv(faults.CRASH_ENV, point)
    monkeypatch.setattr(faults, "_reached", Counter())
    monkeypatch.setattr(faults, "_crash", crash)
