"""Inference backends (ONNX Runtime, TensorRT) behind one interface."""
