"""PHPQ Search runtime: indexing, search, the `phpq` CLI and the window (phpq.gui). Never imports torch."""

__version__ = "0.1.0"
