"""The training engine: models, datasets, the training loop, and the contract with the UI.

torchvision is imported only where it is used (its networks, datasets, image-file transforms
and ImageNet weights): importing it loads torch._dynamo, about 2.5 s on a machine like ours,
which a CIFAR ResNet on built-in data never needs.
"""
