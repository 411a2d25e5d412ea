"""Published model shapes, buildable without weights, for memory and speed projections.

Each entry is the model's own published ``config.json`` hyper-parameters. ``build_architecture``
instantiates it on the meta device: every tensor has its shape and dtype but no storage, so even
the 13B model costs no memory.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    PretrainedConfig,
    RobertaConfig,
)

from edge_runtime.errors import UserError
from edge_runtime.models.families import kind_for_family
from edge_runtime.models.pooled_classifier import PooledClassifier, Pooling

# Ids of [PAD], [CLS] and [SEP] in the BERT uncased wordpiece vocabulary that the random tiny
# models share with MiniLM; tiny-llama uses [CLS]/[SEP] as its bos/eos.
BERT_VOCAB_SIZE = 30522
BERT_PAD_ID, BERT_CLS_ID, BERT_SEP_ID = 0, 101, 102
# BERT-base's 0.02 init std is tuned for width 768; at width 64 it leaves a random model's outputs
# almost independent of its input (nothing to learn from). Scaling it like 1/sqrt(width) keeps the
# activations of the tiny models at BERT-base's scale.
_TINY_WIDTH = 64
_TINY_INIT_STD = 0.02 * (768 / _TINY_WIDTH) ** 0.5

ARCHITECTURES: dict[str, PretrainedConfig] = {
    "tiny-bert": BertConfig(
        vocab_size=BERT_VOCAB_SIZE,
        hidden_size=_TINY_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        initializer_range=_TINY_INIT_STD,
        pad_token_id=BERT_PAD_ID,
    ),
    "tiny-llama": LlamaConfig(
        vocab_size=BERT_VOCAB_SIZE,
        hidden_size=_TINY_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        initializer_range=_TINY_INIT_STD,
        tie_word_embeddings=False,
        pad_token_id=BERT_PAD_ID,
        bos_token_id=BERT_CLS_ID,
        eos_token_id=BERT_SEP_ID,
    ),
    "minilm": BertConfig(  # sentence-transformers/all-MiniLM-L6-v2
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    ),
    "smollm2-135m": LlamaConfig(  # HuggingFaceTB/SmolLM2-135M-Instruct
        vocab_size=49152,
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    ),
    "roberta-large": RobertaConfig(  # FacebookAI/roberta-large
        vocab_size=50265,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ),
    "opt-1.3b": OPTConfig(  # facebook/opt-1.3b
        vocab_size=50272,
        hidden_size=2048,
        word_embed_proj_dim=2048,
        num_hidden_layers=24,
        num_attention_heads=32,
        ffn_dim=8192,
        max_position_embeddings=2048,
    ),
    "opt-13b": OPTConfig(  # facebook/opt-13b
        vocab_size=50272,
        hidden_size=5120,
        word_embed_proj_dim=5120,
        num_hidden_layers=40,
        num_attention_heads=40,
        ffn_dim=20480,
        max_position_embeddings=2048,
    ),
    "llama-2-7b": LlamaConfig(  # meta-llama/Llama-2-7b-hf
        vocab_size=32000,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    "mistral-7b": MistralConfig(  # mistralai/Mistral-7B-v0.1
        vocab_size=32000,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        max_position_embeddings=32768,
        sliding_window=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
}


def architecture_config(name: str) -> PretrainedConfig:
    """A private copy of a published config, safe for the caller to modify."""
    try:
        return copy.deepcopy(ARCHITECTURES[name])
    except KeyError:
        raise UserError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def model_from_config(
    config: PretrainedConfig, *, pooling: Pooling = Pooling(), attn_implementation: str = "eager"
) -> nn.Module:
    """A randomly initialised model: an encoder as a `PooledClassifier` of ``config.num_labels``
    classes, a causal LM with its language-model head."""
    if kind_for_family(config.model_type) == "encoder":
        return PooledClassifier.from_config(config, pooling, attn_implementation=attn_implementation)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


def build_architecture(name: str) -> nn.Module:
    """The model with the published shapes on the meta device: no weights, no memory."""
    config = architecture_config(name)
    with torch.device("meta"):
        return model_from_config(config)
