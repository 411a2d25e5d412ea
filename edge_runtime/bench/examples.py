"""The batch every benchmark row runs: real examples stretched to an exact length (torch-free, so
the ONNX Runtime probe shares it)."""

from __future__ import annotations

from dataclasses import replace

from edge_runtime.tasks import get_task, load_split


def long_examples(task: str, batch: int):
    """Real examples whose text is repeated past any max_length, so every row is exactly max_length
    tokens after truncation: the measured shape is the asked one."""
    spec = get_task(task)
    examples = load_split(task, "eval", None)[:batch]
    stretch = lambda s: " ".join([s] * 64)  # noqa: E731
    return spec, [
        replace(
            ex,
            text=stretch(ex.text) if isinstance(ex.text, str) else ex.text,
            prompt=stretch(ex.prompt),
            fields=tuple((name, stretch(value)) for name, value in ex.fields),
        )
        for ex in examples
    ]
