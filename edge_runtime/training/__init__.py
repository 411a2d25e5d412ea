"""Single-device training: config, loop, evaluation, checkpoints."""
