"""The app's screens: history, launch, one run, compare, sweep and queue."""
