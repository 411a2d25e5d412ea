"""Forward-only (zeroth-order) and forward-mode LoRA fine-tuning for edge devices."""

__version__ = "0.1.0"
