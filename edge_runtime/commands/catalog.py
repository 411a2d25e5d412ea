"""`edgetune list`: the models, tasks and methods this install knows."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.estimators import METHODS
    from edge_runtime.models import MODEL_ALIASES
    from edge_runtime.tasks import TASKS

    print("models: ", ", ".join(MODEL_ALIASES))
    print("tasks:  ", ", ".join(TASKS))
    print("methods:")
    for m in METHODS.values():
        print(f"  {m.name:14s} {'forward-only' if m.forward_only else 'backprop    '}  lr={m.default_lr:g}  {m.summary}")


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list models, tasks and methods").set_defaults(run=_run)
