"""Everything about runs without a UI: the store, their state, supervisors, the queue."""
