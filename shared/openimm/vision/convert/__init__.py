"""Build-time converters that turn pinned third-party model files into ONNX graphs."""
