"""Round planners: who trains which slices in a round. One module per planner, one interface."""

from typing import Literal

from coordinator.planners.base import Assignment, DeviceInfo, RoundPlanner
from coordinator.planners.full import FedAvgFull, ZOSeed
from coordinator.planners.spry import Spry

PLANNERS: dict[str, type[RoundPlanner]] = {p.name: p for p in (Spry, FedAvgFull, ZOSeed)}
Planner = Literal[tuple(PLANNERS)]  # a config field of this type takes one of the names above

__all__ = ["PLANNERS", "Assignment", "DeviceInfo", "Planner", "RoundPlanner"]
