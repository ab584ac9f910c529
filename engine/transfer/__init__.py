"""Transfer learning: where weights start, which parts train, and distillation."""
