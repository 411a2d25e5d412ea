"""Recovery: the coordinator's state rebuilt from its folder after a crash or a restart.

The state is a fold of the closed rounds' accepted updates over the initial adapter, so recovery
loads the newest checkpoint whose hash matches the ledger (a torn or damaged file falls back to the
one before), merges again every round the ledger closed after it (round_merge reads only the
ledger), and reopens the round that was open, with a fresh deadline: the devices lost their
coordinator for the outage, they did not fall silent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from coordinator.ledger import Ledger
from coordinator.open_round import OpenRound
from coordinator.round_merge import MergeInputs, merge_into
from coordinator.state_store import DamagedCheckpoint, GlobalState, StateStore
from edge_runtime.protocol import pb


@dataclass
class Recovered:
    """What recovery gives the round keeper: the state, the round that was open (reopened), if any, and how
    many rounds the ledger closed."""

    state: GlobalState
    open: OpenRound | None
    closed_rounds: int  # every round the ledger closed, before and after the checkpoint


def recover(
    ledger: Ledger,
    store: StateStore,
    inputs: MergeInputs,
    initial: Callable[[bool], GlobalState],
    reopen_until: float,
    log: Callable[[str], None],
) -> Recovered:
    """The state the ledger commits to; `initial(first_start)` is the state before any round, used when
    no checkpoint can be read (`first_start`: the ledger has no round yet). The strategy's server
    optimizer is left holding the recovered moments."""
    rounds = ledger.rounds()
    state = newest_checkpoint(ledger, store, log) or initial(not rounds)
    inputs.strategy.optimizer.state = state.optimizer
    closed = [r for r in rounds if r.status == "closed"]
    for row in closed:
        if row.round >= state.version:  # closed after the checkpoint we could read: merge it again
            merge_into(state, ledger, row.round, inputs)
            file, sha256 = store.write(state)
            ledger.record_checkpoint(state.version, row.round, file, sha256)
    open_rows = [r for r in rounds if r.status == "open"]
    reopened = None
    if open_rows:
        row = replace(open_rows[0], deadline_at=max(open_rows[0].deadline_at, reopen_until))
        assignments = ledger.assignments(row.round)
        reopened = OpenRound(
            row,
            {d: pb.Task.FromString(blob) for d, (blob, _) in assignments.items()},
            {d: status for d, (_, status) in assignments.items() if status != "assigned"},
        )
    return Recovered(state, reopened, len(closed))


def newest_checkpoint(ledger: Ledger, store: StateStore, log: Callable[[str], None]) -> GlobalState | None:
    """The newest checkpoint whose file matches the ledger's hash, falling back (and saying so) past damaged
    ones; None when none can be read."""
    for version, _round, file, sha256 in ledger.checkpoints():
        try:
            return store.read(version, file, sha256)
        except DamagedCheckpoint as error:
            log(f"coordinator: {error}; falling back to the previous checkpoint")
    return None
