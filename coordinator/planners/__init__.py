"""Round planners: who trains which slices in a round. One module per planner, one interface."""

from coordinator.planners.base import Assignment, DeviceInfo, RoundPlanner
from coordinator.planners.full import FedAvgFull, ZOSeed
from coordinator.planners.spry import Spry

PLANNERS: dict[str, type[RoundPlanner]] = {p.name: p for p in (Spry, FedAvgFull, ZOSeed)}

__all__ = ["PLANNERS", "Assignment", "DeviceInfo", "RoundPlanner"]
