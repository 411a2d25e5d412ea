"""What a step's seed decides, the same on every backend and on the coordinator: the random
directions it draws (`draws`), the block a block-wise query perturbs (`blocks`), and the scalars a
step reports with its seeds (`scalars`).

A device uploads seeds and scalars, not tensors, only because everything here is reproducible from
them alone; so these modules import numpy at most, never torch or onnxruntime, and the PyTorch
estimators, the ONNX Runtime methods and the coordinator's replay all use them as they are.
"""
