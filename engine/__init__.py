"""The training engine: models, datasets, the training loop, and the contract with the UI.

torchvision is imported only where it is used (its networks, datasets, image-file transforms
and ImageNet weights). An engine's start is mostly torch's own: on a 2-core machine about 3 s
to import torch and 2.4 s for the torch._dynamo that every torch optimiser loads when it is
made, then 0.2 s for torchvision where a run needs it.
"""
