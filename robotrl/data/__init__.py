"""Datasets in the LeRobotDataset v3.0 layout: writer, reader, recorder, training windows."""
