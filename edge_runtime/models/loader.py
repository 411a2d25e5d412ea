"""One entry point that turns an alias or a local HF folder into a frozen, eval-mode model + tokenizer."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from edge_runtime.errors import UserError
from edge_runtime.models.architectures import architecture_config, model_from_config
from edge_runtime.models.families import ModelKind, kind_for_family
from edge_runtime.models.minilm import minilm_folder
from edge_runtime.models.pooled_classifier import PooledClassifier, Pooling
from edge_runtime.models.registry import MODEL_ALIASES
from edge_runtime.models.smollm2 import smollm2_folder

logger = logging.getLogger(__name__)
# Loading takes a second from local files; transformers' per-weight bar would only clutter the
# runtime's own progress bars.
hf_logging.disable_progress_bar()

_PRETRAINED_ALIASES: dict[str, Callable[[], Path]] = {"minilm": minilm_folder, "smollm2-135m": smollm2_folder}
# Random models borrow MiniLM's tokenizer: any valid vocabulary will do for random weights, and it
# keeps them independent of the larger SmolLM2 package.
_RANDOM_ALIASES: frozenset[str] = frozenset({"tiny-bert", "tiny-llama"})


@dataclass
class LoadedModel:
    model: nn.Module  # eval() mode, every base parameter requires_grad=False; encoders: a PooledClassifier
    tokenizer: PreTrainedTokenizerBase  # always has a pad token
    name: str  # the alias or the folder path as given
    family: str  # config.model_type, e.g. "bert", "llama"
    kind: ModelKind
    path: str | None  # local HF folder the base weights came from; None for random models


def load_model(
    name_or_path: str,
    *,
    num_labels: int = 2,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "eager",
    seed: int = 0,
) -> LoadedModel:
    """Load an alias (see MODEL_ALIASES) or a local HF folder.

    Encoders become a `PooledClassifier` with ``num_labels`` outputs, its head initialised from
    ``seed`` (as are all weights of the random aliases); causal LMs ignore ``num_labels``.
    ``attn_implementation`` defaults to "eager" because SDPA on CPU has no forward-mode AD.
    Seeds torch's global RNG with ``seed`` on purpose: what draws from it next (LoRA's
    initialisation in `apply_lora`) is then reproducible from the same seed.
    """
    options = _LoadOptions(num_labels, dtype, attn_implementation, seed)
    if name_or_path in _RANDOM_ALIASES:
        return _build_random(name_or_path, options)
    if name_or_path in _PRETRAINED_ALIASES:
        return _load_folder(_PRETRAINED_ALIASES[name_or_path](), name_or_path, options)
    folder = Path(name_or_path).expanduser()
    if not _looks_like_path(name_or_path) and not folder.exists():
        aliases = ", ".join(MODEL_ALIASES)
        raise UserError(f"unknown model {name_or_path!r}; use one of {aliases} or a local model folder")
    return _load_folder(folder, name_or_path, options)


@dataclass(frozen=True)
class _LoadOptions:
    num_labels: int
    dtype: torch.dtype
    attn_implementation: str
    seed: int


def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.startswith((".", "~"))


def _build_random(alias: str, options: _LoadOptions) -> LoadedModel:
    config = architecture_config(alias)
    kind = kind_for_family(config.model_type)
    if kind == "encoder":
        config.num_labels = options.num_labels
    torch.manual_seed(options.seed)
    # Like any encoder without sentence-transformers files: mean pooling, not normalised.
    model = model_from_config(config, attn_implementation=options.attn_implementation)
    # Initialise in fp32 and cast, so a seed gives the same weights (up to rounding) in every dtype.
    model.to(options.dtype)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    if kind == "causal_lm":
        # BERT's vocabulary has no bos/eos; name the tokens the config uses for them.
        tokenizer.bos_token = tokenizer.convert_ids_to_tokens(config.bos_token_id)
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(config.eos_token_id)
    return _finish(model, tokenizer, name=alias, kind=kind, path=None)


def _load_folder(folder: Path, name: str, options: _LoadOptions) -> LoadedModel:
    if not folder.exists():
        raise UserError(f"model folder {str(folder)!r} does not exist (models load from local folders only)")
    if not (folder / "config.json").is_file():
        raise UserError(f"{str(folder)!r} is not a Hugging Face model folder: it has no config.json")
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the model config in {str(folder)!r}: {_first_line(error)}") from error
    kind = kind_for_family(config.model_type)
    # An encoder loads as its base model: whatever task head the checkpoint has, this runtime's
    # head reads the pooled embedding.
    model_class = AutoModel if kind == "encoder" else AutoModelForCausalLM
    try:
        with _held_back_load_report():
            model, loading_info = model_class.from_pretrained(
                folder,
                dtype=options.dtype,
                attn_implementation=options.attn_implementation,
                output_loading_info=True,
            )
    except OSError as error:  # transformers' way of saying a weight file is missing
        raise UserError(f"cannot load the model in {str(folder)!r}: {_first_line(error)}") from error
    _warn_about_weights_not_loaded(model, loading_info, everything=kind == "encoder")
    torch.manual_seed(options.seed)
    if kind == "encoder":
        model = PooledClassifier(model, options.num_labels, Pooling.of_folder(folder))
        model.load_classifier(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:  # no tokenizer files, or none this install can read
        raise UserError(f"cannot load the tokenizer in {str(folder)!r}: {_first_line(error)}") from error
    return _finish(model, tokenizer, name=name, kind=kind, path=str(folder.resolve()))


def _finish(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, name: str, kind: ModelKind, path: str | None
) -> LoadedModel:
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"the tokenizer of {name!r} has neither a pad nor an eos token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.requires_grad_(False)
    family = model.config.model_type
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, family=family, kind=kind, path=path)


@contextlib.contextmanager
def _held_back_load_report() -> Iterator[None]:
    """Hold back transformers' load report, which flags the classification head we add on purpose.

    If loading fails the report explains why, so it is shown then. A filter rather than a higher
    log level: raising the level makes transformers log a tensor-parallel check of its own.
    """
    report_logger = hf_logging.get_logger("transformers.modeling_utils")
    held: list[logging.LogRecord] = []

    def hold_report(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            held.append(record)
            return False
        return True

    report_logger.addFilter(hold_report)
    failed = True
    try:
        yield
        failed = False
    finally:
        report_logger.removeFilter(hold_report)
        if failed:
            for record in held:
                report_logger.handle(record)


def _warn_about_weights_not_loaded(model: nn.Module, loading_info: dict, *, everything: bool) -> None:
    """Base weights missing or of the wrong shape mean a broken checkpoint. A causal LM's head may
    be missing (tied to the embeddings); an encoder loaded without a head has nothing but base weights."""
    base_prefix = "" if everything else f"{model.base_model_prefix}."
    missing = set(loading_info["missing_keys"]) | {key for key, *_ in loading_info["mismatched_keys"]}
    not_loaded = sorted(key for key in missing if key.startswith(base_prefix))
    if not_loaded:
        logger.warning(
            "%d base weights were missing from the checkpoint or of the wrong shape, so are randomly initialised: %s",
            len(not_loaded),
            ", ".join(not_loaded[:5]) + (", ..." if len(not_loaded) > 5 else ""),
        )


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
