"""Resumable checkpoints: trainable tensors and method state in safetensors, progress in JSON.

A checkpoint folder is written beside the old one and swapped in by rename, so a crash mid-write
leaves the previous checkpoint intact. No pickle: a checkpoint can come from another machine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edge_runtime.errors import UserError

TRAINABLE = "trainable.safetensors"
METHOD_STATE = "method_state.safetensors"
PROGRESS = "progress.json"


@dataclass
class Progress:
    step: int
    method: str
    model: str
    task: str
    # The head's warm-start constants (heads/base.py), fixed when training started.
    head_constants: dict | None = None


def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def save_checkpoint(
    folder: Path,
    params: Mapping[str, torch.Tensor],
    method_state: Mapping[str, torch.Tensor],
    progress: Progress,
    peft_model=None,
) -> None:
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _save_tensors(params, staging / TRAINABLE)
    _save_tensors(method_state, staging / METHOD_STATE)
    (staging / PROGRESS).write_text(json.dumps(progress.__dict__, indent=2))
    if peft_model is not None:
        peft_model.save_pretrained(str(staging / "adapter"))
    previous = folder.with_name(folder.name + ".previous")
    if folder.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def saved_method(folder: Path) -> str | None:
    """The method a checkpoint was trained with (None: no checkpoint there)."""
    progress = Path(folder) / PROGRESS
    return json.loads(progress.read_text())["method"] if progress.is_file() else None


def load_checkpoint(folder: Path, params: Mapping[str, torch.nn.Parameter]) -> tuple[Progress, dict[str, torch.Tensor]]:
    """Copies the saved trainable tensors into `params`; returns progress and the method state."""
    folder = Path(folder)
    if not (folder / PROGRESS).is_file():
        raise UserError(f"no checkpoint to resume in {folder}")
    progress = Progress(**json.loads((folder / PROGRESS).read_text()))
    saved = load_file(str(folder / TRAINABLE))
    if set(saved) != set(params):
        raise UserError(
            f"checkpoint in {folder} was made for other trainable parameters "
            f"({len(saved)} saved, {len(params)} in this model); check model and LoRA settings"
        )
    with torch.no_grad():
        for name, p in params.items():
            if saved[name].shape != p.shape:
                raise UserError(
                    f"checkpoint tensor {name} has shape {tuple(saved[name].shape)}, the model has {tuple(p.shape)}"
                )
            p.copy_(saved[name])
    return progress, load_file(str(folder / METHOD_STATE))
