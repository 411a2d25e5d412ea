"""Memory: what a step will need (model), what fits a cap (planner), what is used (measure, watchdog)."""

__all__ = ["MemoryEstimate", "Workload", "estimate", "inference_estimate"]


def __getattr__(name: str):
    # The memory model needs torch; `measure` must not, since the ONNX Runtime probe measures a process
    # without it. So the model's names load on first use rather than with the package.
    if name in __all__:
        from edge_runtime.memory import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
