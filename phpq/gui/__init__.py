"""The PySide6 desktop window: a thin layer over ``phpq.library`` (widgets never run SQL or ONNX)."""
