"""`edgetune train`: fine-tune a LoRA adapter on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from edge_runtime.config import add_config_arguments, config_sources


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.training.config import TrainConfig
    from edge_runtime.training.recipes import configure

    # Settings are checked before PyTorch loads (seconds).
    config, recipe = configure(*config_sources(TrainConfig, args))
    from edge_runtime.training.trainer import train  # an install without PyTorch stops here, in one line

    if recipe is not None:
        print(
            f"edgetune: recipe {recipe.describe()} (given settings override it; --no-recipe for none)", file=sys.stderr
        )
    summary = train(config)
    shown = {k: v for k, v in summary.items() if k != "config"}
    print(json.dumps(shown, indent=2))
    if summary["stopped"] != "completed":
        print(f"edgetune: stopped early: {summary['stopped']}", file=sys.stderr)
        sys.exit(3)


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.training.config import TrainConfig

    parser = sub.add_parser("train", help="fine-tune a LoRA adapter on this machine")
    add_config_arguments(parser, TrainConfig)
    parser.set_defaults(run=_run)
