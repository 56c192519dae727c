"""Show a photo in the system file manager. Commands are argument lists, never a shell."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def reveal_command(path: Path, platform: str = sys.platform) -> list[list[str]]:
    """Commands to try, in order, to show ``path`` selected in the file manager."""
    path = Path(path)
    if platform.startswith("win"):
        return [["explorer", f"/select,{path}"]]
    if platform == "darwin":
        return [["open", "-R", str(path)]]
    show_items = [
        "dbus-send",
        "--session",
        "--print-reply",
        "--dest=org.freedesktop.FileManager1",
        "--type=method_call",
        "/org/freedesktop/FileManager1",
        "org.freedesktop.FileManager1.ShowItems",
        f"array:string:{path.as_uri()}",
        "string:",
    ]
    return [show_items, ["xdg-open", str(path.parent)]]


def reveal_in_file_manager(path: Path) -> bool:
    """Show ``path`` in the file manager; False when no way worked (the caller says so)."""
    for command in reveal_command(path):
        if shutil.which(command[0]) is None:
            continue
        try:
            result = subprocess.run(command, capture_output=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            log.info("%s failed: %s", command[0], error)
            continue
        # explorer.exe returns 1 even when it worked
        if result.returncode == 0 or command[0] == "explorer":
            return True
    return False
