"""The window's look, in one Qt style sheet: object names and dynamic properties select the widgets."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

STYLESHEET = """
QLabel#banner {
    background: #fdecea;
    color: #611a15;
    border: 1px solid #f5c6cb;
    border-radius: 4px;
    padding: 6px;
}
QLabel#suggestion {
    font-size: 15px;
    padding: 4px 2px;
}
QLabel#suggestion[hint="true"] {
    font-size: 12px;
    color: #666;
}
QLabel#queryPicture[hint="true"] {
    font-size: 48px;
    color: palette(mid);
}
"""


def set_style_flag(widget: QWidget, name: str, value: bool) -> None:
    """Set a dynamic property the style sheet selects on, and restyle ``widget`` to match."""
    widget.setProperty(name, value)
    widget.style().unpolish(widget)
    widget.style().polish(widget)
