"""The training engine: models, datasets, the training loop, and the contract with the UI."""
