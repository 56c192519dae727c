"""Export a PHPQ checkpoint to one self-describing ONNX model the app can load (torch + onnx)."""
