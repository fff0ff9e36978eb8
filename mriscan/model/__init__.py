"""The model: bundle and card, architectures, training and fit, calibration, ONNX export and runtime."""
