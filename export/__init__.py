"""Export room (needs torch and onnx): ONNX export, TensorRT engine build, equivalence checks."""
