"""Memory: what a step will need (model), what fits a cap (planner), what is used (measure, watchdog)."""

from edge_runtime.memory.model import MemoryEstimate, Workload, estimate, inference_estimate

__all__ = ["MemoryEstimate", "Workload", "estimate", "inference_estimate"]
