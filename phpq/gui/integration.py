"""Desktop integration: the application icon and a freedesktop menu entry for the current user.

``phpq-app --install-desktop-entry`` writes ``applications/phpq-search.desktop`` and the icon (SVG and
PNG sizes under ``icons/hicolor``) into the user's XDG data directory (``$XDG_DATA_HOME``, by default
``~/.local/share``), and nothing anywhere else; ``--uninstall-desktop-entry`` removes exactly those files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtGui import QIcon

log = logging.getLogger(__name__)

APP_ID = "phpq-search"  # the .desktop file's name, the icon's theme name and Qt's desktopFileName
ICON_DIR = Path(__file__).resolve().parent / "icons"
SVG_ICON = ICON_DIR / f"{APP_ID}.svg"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
MIME_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/gif",
    "image/tiff",
    "image/heic",
    "image/heif",
)


def png_icon(size: int) -> Path:
    """The bundled PNG of the icon at ``size`` x ``size`` pixels."""
    return ICON_DIR / f"{APP_ID}-{size}.png"


def app_icon() -> QIcon:
    """The window icon: every PNG size, plus the SVG for any other size."""
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addFile(str(png_icon(size)))
    icon.addFile(str(SVG_ICON))
    return icon


def xdg_data_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME`` when set to an absolute path, else ``~/.local/share`` (the XDG rule)."""
    env = os.environ if env is None else env
    value = env.get("XDG_DATA_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(env.get("HOME") or Path.home()) / ".local" / "share"


def launch_command() -> list[str]:
    """How the menu starts the window: the ``phpq-app`` script of this installation if there is one."""
    beside = Path(sys.executable).with_name("phpq-app")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("phpq-app")
    return [found] if found else [sys.executable, "-m", "phpq"]


def _exec_argument(argument: str) -> str:
    """Quote one argument for a desktop entry's Exec key (the spec's quoting, then its string escapes)."""
    argument = argument.replace("%", "%%")
    if re.search(r"[\s\"'\\><~|&;$*?#()`]", argument):
        argument = '"' + re.sub(r'(["`$\\])', r"\\\1", argument) + '"'
    return argument.replace("\\", "\\\\")


def desktop_entry(command: list[str]) -> str:
    """The text of the .desktop file that starts ``command`` with an optional photo to search."""
    exec_line = " ".join(_exec_argument(part) for part in command)
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Version=1.4",
            "Name=PHPQ Search",
            "GenericName=Photo Look-alike Search",
            "Comment=Find look-alike bird photos in your own folders",
            f"Exec={exec_line} %f",
            f"Icon={APP_ID}",
            "Terminal=false",
            "Categories=Graphics;Photography;Viewer;",
            f"MimeType={';'.join(MIME_TYPES)};",
            "Keywords=photo;bird;similar;look-alike;search;",
            "",
        ]
    )


def entry_path(data_home: Path) -> Path:
    """Where the .desktop file goes under ``data_home``."""
    return data_home / "applications" / f"{APP_ID}.desktop"


def icon_files(data_home: Path) -> list[tuple[Path, Path]]:
    """(installed path under ``data_home``, bundled file) for every size of the icon, in the hicolor theme."""
    icons = data_home / "icons" / "hicolor"
    return [
        (icons / "scalable" / "apps" / f"{APP_ID}.svg", SVG_ICON),
        *((icons / f"{size}x{size}" / "apps" / f"{APP_ID}.png", png_icon(size)) for size in ICON_SIZES),
    ]


def entry_files(data_home: Path) -> list[Path]:
    """Every file the desktop entry installs under ``data_home``: the entry first, then the icons."""
    return [entry_path(data_home), *(target for target, _ in icon_files(data_home))]


def install_desktop_entry(data_home: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Write the menu entry and the icon for this user; returns the files written."""
    data_home = data_home or xdg_data_home()
    for target, source in icon_files(data_home):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    entry = entry_path(data_home)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(desktop_entry(command or launch_command()), encoding="utf-8")
    _refresh_menu_cache(entry.parent)
    return entry_files(data_home)


def uninstall_desktop_entry(data_home: Path | None = None) -> list[Path]:
    """Remove what ``install_desktop_entry`` wrote; returns the files removed."""
    data_home = data_home or xdg_data_home()
    removed = [path for path in entry_files(data_home) if path.is_file()]
    for path in removed:
        path.unlink()
    _refresh_menu_cache(data_home / "applications")
    return removed


def _refresh_menu_cache(applications: Path) -> None:
    """Let the desktop see the change now (update-desktop-database writes only into ``applications``)."""
    tool = shutil.which("update-desktop-database")
    if tool is None or not applications.is_dir():
        return
    try:
        subprocess.run([tool, str(applications)], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.info("update-desktop-database failed: %s", error)
