"""The PySide6 desktop window: a thin layer over ``app.library`` (widgets never run SQL or ONNX)."""
