"""Using what was trained: predicting on new images, exporting a run's model, its mistakes."""
