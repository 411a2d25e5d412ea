"""ONNX Runtime backend: inference graphs whose LoRA matrices are inputs, so an ORT session alone
can run forward-only training (issue 4; this package grows the trainer and the torch-free agent)."""
