"""`edgetune`: one command, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys

from edge_runtime.config import add_config_arguments, config_from_args
from edge_runtime.errors import UserError


def _train(args: argparse.Namespace) -> None:
    from edge_runtime.training.config import TrainConfig
    from edge_runtime.training.trainer import train

    summary = train(config_from_args(TrainConfig, args))
    shown = {k: v for k, v in summary.items() if k != "config"}
    print(json.dumps(shown, indent=2))
    if summary["stopped"] != "completed":
        print(f"edgetune: stopped early: {summary['stopped']}", file=sys.stderr)
        sys.exit(3)


def _list(args: argparse.Namespace) -> None:
    from edge_runtime.estimators import METHODS
    from edge_runtime.models import MODEL_ALIASES
    from edge_runtime.tasks import TASKS

    print("models: ", ", ".join(MODEL_ALIASES))
    print("tasks:  ", ", ".join(TASKS))
    print("methods:")
    for m in METHODS.values():
        print(f"  {m.name:14s} {'forward-only' if m.forward_only else 'backprop    '}  lr={m.default_lr:g}  {m.summary}")


def parser() -> argparse.ArgumentParser:
    from edge_runtime.training.config import TrainConfig

    root = argparse.ArgumentParser(prog="edgetune", description="Forward-only LoRA fine-tuning for edge devices.")
    sub = root.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="fine-tune a LoRA adapter on this machine",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(train, TrainConfig)
    train.set_defaults(run=_train)
    sub.add_parser("list", help="list models, tasks and methods").set_defaults(run=_list)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as error:
        print(f"edgetune: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("edgetune: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
