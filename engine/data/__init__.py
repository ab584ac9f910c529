"""Datasets and batches: built-in shapes, torchvision datasets and image folders."""
