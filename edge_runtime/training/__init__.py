"""Single-device training: config, loop, method choice, checkpoints (evaluation is local/evaluation.py)."""
