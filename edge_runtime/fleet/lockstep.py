"""Run several jobs in lockstep so that the requests they make one at a time can be served together.

Each emulated device's local training is ordinary sequential code (an estimator calling its
objective's loss). To put many devices' forward passes through the shared base as one batch, the
emulator runs each device's training as a job in its own thread and makes the loss a *request*: the
job blocks until every other job has also blocked on a request (or finished), then one call serves
all the pending requests at once and every job goes on.

The threads are coroutines, not parallelism: exactly one runs at a time, handing a baton on when it
blocks, in job order. So nothing a job touches (the coordinator client, a tokenizer, torch's
process-wide forward-AD state, the shared module that `functional_call` re-parametrizes) is ever
used by two threads at once, and which requests are served together depends only on the jobs'
code, not on thread timing: a lockstep run is as reproducible as a sequential one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")  # a request
T = TypeVar("T")  # a job's result

_current = threading.local()


@dataclass
class _Job:
    run: Callable[[], object]
    go: threading.Event = field(default_factory=threading.Event)
    request: list | None = None  # what the job waits on
    reply: list | None = None
    failure: BaseException | None = None  # raised into the job by serve()
    result: object | None = None
    error: BaseException | None = None  # what the job raised
    finished: bool = False


class Lockstep(Generic[R]):
    """`run(jobs)` runs jobs in lockstep; inside a job, `request(r)` blocks until `serve` has answered
    the pending requests of every job together. `serve(requests)` returns one reply per request, in
    order, or an exception to raise in that request's job."""

    def __init__(self, serve: Callable[[list[R]], list[object]]) -> None:
        self.serve = serve
        self.rounds_served = 0
        self.requests_served = 0

    @staticmethod
    def active() -> Lockstep | None:
        """The lockstep the calling thread's job runs in, if any."""
        return getattr(_current, "lockstep", None)

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Every job's result in job order; the first job that raised re-raises here once all have ended."""
        states = [_Job(job) for job in jobs]
        handed_back = threading.Event()
        threads = [
            threading.Thread(target=self._body, args=(s, handed_back), daemon=True, name=f"lockstep-{i}")
            for i, s in enumerate(states)
        ]
        for thread in threads:
            thread.start()
        runnable = list(states)
        while runnable:
            for state in runnable:  # the baton goes round in job order
                handed_back.clear()
                state.go.set()
                handed_back.wait()
            waiting = [s for s in states if not s.finished]
            if waiting:
                self._answer(waiting)
            runnable = waiting
        for thread in threads:
            thread.join()
        failed = next((s.error for s in states if s.error is not None), None)
        if failed is not None:
            raise failed
        return [s.result for s in states]

    def _answer(self, waiting: list[_Job]) -> None:
        requests = [r for s in waiting for r in s.request]
        try:
            replies = self.serve(requests)
        except BaseException as error:  # noqa: BLE001 - every job waiting on it must hear of it
            replies = [error] * len(requests)
        self.rounds_served += 1
        self.requests_served += len(requests)
        for state in waiting:
            mine, replies = replies[: len(state.request)], replies[len(state.request) :]
            state.request = None
            failure = next((r for r in mine if isinstance(r, BaseException)), None)
            state.failure, state.reply = (failure, None) if failure is not None else (None, mine)

    def _body(self, state: _Job, handed_back: threading.Event) -> None:
        _current.lockstep, _current.job, _current.handed_back = self, state, handed_back
        state.go.wait()
        state.go.clear()
        try:
            state.result = state.run()
        except BaseException as error:  # noqa: BLE001 - re-raised by run() in the caller's thread
            state.error = error
        state.finished = True
        handed_back.set()

    def request(self, request: R) -> object:
        """From inside a job: wait for the reply to `request`."""
        return self.request_all([request])[0]

    def request_all(self, requests: Sequence[R]) -> list[object]:
        """From inside a job: wait for the replies to several requests, served with the other jobs'."""
        state: _Job = _current.job
        state.request = list(requests)
        _current.handed_back.set()
        state.go.wait()
        state.go.clear()
        if state.failure is not None:
            failure, state.failure = state.failure, None
            raise failure
        replies, state.reply = state.reply, None
        return replies
