"""PHPQ Search runtime: imaging, retrieval metrics and (later) indexing and search. Never imports torch."""

__version__ = "0.1.0"
