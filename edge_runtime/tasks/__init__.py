"""Tasks: packaged data, MeZO prompts and label words, seeded k-shot / eval subsets and batch order."""

from edge_runtime.tasks.base import Example, TaskSpec
from edge_runtime.tasks.registry import TASKS, get_task, load_split
from edge_runtime.tasks.sampling import few_shot, subsample

__all__ = ["TASKS", "Example", "TaskSpec", "few_shot", "get_task", "load_split", "subsample"]
