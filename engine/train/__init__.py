"""Training one run: the loop, its checkpoints and its test metrics."""
