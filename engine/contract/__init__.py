"""The contract between the UI and the engine, torch-free: the run spec, the catalog, events."""
