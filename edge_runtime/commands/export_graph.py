"""`edgetune export-graph`: an ONNX inference graph with the LoRA matrices as inputs."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> None:
    from edge_runtime.ort.export import export_graph
    from edge_runtime.spec import AdapterSpec

    label_words = tuple(word.strip() for word in args.label_words.split(",") if word.strip())
    spec = AdapterSpec(
        args.model,
        args.task,
        args.precision,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_layers=args.lora_layers,
        lora_fa=args.lora_fa,
        init_seed=args.seed,
        prompt=args.prompt,
        label_words=label_words,
    )
    manifest = export_graph(spec, args.out)
    print(f"wrote {args.out}: {len(manifest.trainable)} trainable inputs, batch inputs {', '.join(manifest.inputs)}")


def register(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.ort.manifest import PRECISIONS

    parser = sub.add_parser(
        "export-graph",
        help="export an ONNX graph whose LoRA matrices are inputs (base in fp32, fp16 or int8)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="model alias or local HF folder")
    parser.add_argument("--out", required=True, help="folder for model.onnx, manifest.json and the tokenizer")
    parser.add_argument("--task", default="sst2", help="classification task whose head the graph ends in")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument(
        "--lora-layers", type=int, default=None, help="LoRA in the top N layers only (default: every layer)"
    )
    parser.add_argument("--lora-fa", action="store_true", help="LoRA-FA: A fixed at its seeded start, B trainable")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LoRA (and random head) initialisation")
    parser.add_argument(
        "--prompt",
        default="default",
        help="causal LMs: the task's prompt template, or your own with the task's fields in braces",
    )
    parser.add_argument("--label-words", default="", help="causal LMs: comma-separated words answering each class")
    parser.set_defaults(run=_run)
