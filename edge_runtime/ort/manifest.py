"""What `edgetune export-graph` writes beside the graph, read back by devices that have no PyTorch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from edge_runtime.errors import UserError
from edge_runtime.spec import AdapterSpec

GRAPH_FILE, MANIFEST_FILE, TOKENIZER_DIR = "model.onnx", "manifest.json", "tokenizer"
# The frozen base's precision in the graph; LoRA inputs, the head and the loss stay fp32.
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Manifest:
    adapter: AdapterSpec  # what the graph was exported for; its precision is the graph's base's
    kind: str  # causal_lm | encoder
    inputs: list[str]  # the batch tensors, in graph order, before the trainable ones
    trainable: list[dict]  # {"name", "input", "shape"} in the order estimators visit them
    output: str
    candidate_ids: list[int] | None  # causal LM: vocabulary ids of the task's label words
    pad_id: int = 0
    bos_id: int | None = None  # causal LM: prepended to every prompt, as the PyTorch head does
    # Causal LM: the prompt template (tasks/templates.py) the candidate ids answer, as a dict.
    template: dict | None = None
    # Encoder: the graph's second output, the pooled embedding the classifier reads (warm-start statistics).
    features_output: str | None = None
    # Trainable inputs carry a leading perturbation axis (graphs exported since batched ZO): a
    # session call scores the batch tiled P times through P copies of the adapters.
    perturbation_axis: bool = False

    def save(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        path = Path(folder) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"no exported graph in {folder} (missing {MANIFEST_FILE}); write one with `edgetune export-graph`"
            ) from None
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path}: {error}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(
                f"{path} has fields this edgetune does not know: {', '.join(unknown)} (a graph "
                "exported by another version: export it again)"
            )
        spec = {name: tuple(value) if isinstance(value, list) else value for name, value in data["adapter"].items()}
        return cls(**{**data, "adapter": AdapterSpec(**spec)})
