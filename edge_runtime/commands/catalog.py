"""`edgetune list`: the models, tasks, methods and measured recipes this install knows."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.costs.time_to_target import CANDIDATES
    from edge_runtime.estimators import METHODS
    from edge_runtime.models import MODEL_ALIASES
    from edge_runtime.tasks import TASKS
    from edge_runtime.tasks.templates import TEMPLATES
    from edge_runtime.training.recipes import RECIPES
    from edge_runtime.warm_start.linear_head import ENCODER_WARM_STARTS

    print("models: ", ", ".join(MODEL_ALIASES))
    print("tasks:  ", ", ".join(TASKS))
    print("prompt templates (causal LMs; the first is the default):")
    for task, templates in TEMPLATES.items():
        for template in templates.values():
            shown = repr(template.prompt) if template.prompt else "MeZO's prompt"
            words = f" -> {', '.join(map(repr, template.candidates))}" if template.candidates else ""
            print(f"  {task:10s} {template.name:11s} {shown}{words}  (calibration {template.calibration})")
    print(f"warm starts (encoders): auto, {', '.join(ENCODER_WARM_STARTS)}")
    print("methods:")
    for m in METHODS.values():
        kind = "forward-only" if m.forward_only else "backprop    "
        print(f"  {m.name:14s} {kind}  lr={m.default_lr:g}  {m.summary}")
    print(
        f"  {'auto':14s} {'':12s}  {'':8s}  the fastest to +5 points of {', '.join(CANDIDATES)} within the memory cap"
    )
    print("recipes (edgetune train starts from them; --no-recipe for none):")
    for recipe in RECIPES:
        print(f"  {recipe.describe()}")


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("list", help="list models, tasks, prompt templates, warm starts, methods and recipes").set_defaults(
        run=_run
    )
