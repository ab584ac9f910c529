"""resnet-tui: a terminal experiment manager for residual networks and transfer learning."""

__version__ = "0.1.0"
