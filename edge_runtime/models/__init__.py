"""The model layer: aliases and local folders behind one loader, LoRA wrapping, weightless architectures."""

from edge_runtime.models.architectures import ARCHITECTURES, architecture_config, build_architecture
from edge_runtime.models.families import ModelKind, default_lora_targets
from edge_runtime.models.loader import LoadedModel, load_model
from edge_runtime.models.lora import apply_lora
from edge_runtime.models.registry import MODEL_ALIASES

__all__ = [
    "ARCHITECTURES",
    "MODEL_ALIASES",
    "LoadedModel",
    "ModelKind",
    "apply_lora",
    "architecture_config",
    "build_architecture",
    "default_lora_targets",
    "load_model",
]
