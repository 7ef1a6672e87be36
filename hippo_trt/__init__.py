"""hippo-trt: lossless speculative decoding for video LLMs, exported to ONNX Runtime and TensorRT."""

__version__ = "0.1.0"
