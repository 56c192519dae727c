"""Check, before Qt starts, that the window can open: Qt's own failure is an abort with a vague message.

On Linux, Qt needs a platform plugin ("xcb" for X11, "wayland") whose system libraries are present and
a display to connect to. When neither candidate can work, ``platform_problem`` returns one line that
names what is missing and how to install it; ``phpq-app`` prints it and exits instead of letting Qt
abort. Other platforms (Windows, macOS) and the non-display plugins ("offscreen", "minimal", ...) are
not checked.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

# shared library -> (Debian/Ubuntu package, Fedora package); the libraries Qt 6's xcb plugin needs
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor"),
}

PLUGIN_FILES = {"xcb": "libqxcb.so", "wayland": "libqwayland.so"}

Loader = Callable[[Path], None]


def debian_package(library: str) -> str:
    """The Debian/Ubuntu package that ships ``library`` (by Debian's naming rule when not in PACKAGES)."""
    if library in PACKAGES:
        return PACKAGES[library][0]
    match = re.fullmatch(r"(lib[\w.+-]+?)\.so\.(\d+)", library)
    if match is None:
        return library
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def candidate_platforms(env: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt will try, in order (QT_QPA_PLATFORM, else Qt's Linux default)."""
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return [name.split(":")[0].strip() for name in requested.split(";") if name.strip()]
    if env.get("XDG_SESSION_TYPE") == "wayland":
        return ["wayland", "xcb"]
    return ["xcb"]


def load_library(path: Path) -> None:
    """dlopen ``path`` (raises OSError naming the first missing dependency)."""
    ctypes.CDLL(str(path))


def missing_libraries(plugin: Path, load: Loader = load_library) -> list[str]:
    """The system libraries the plugin cannot find: every one ldd reports, else the one dlopen names."""
    try:
        load(plugin)
    except OSError as error:
        missing = _ldd_missing(plugin)
        if not missing:
            named = re.match(r"\s*([^:\s]+\.so[.\d]*)\s*:", str(error))
            missing = [named.group(1) if named else str(error)]
        return missing
    return []


def _ldd_missing(plugin: Path) -> list[str]:
    ldd = shutil.which("ldd")
    if ldd is None or not plugin.is_file():
        return []
    try:
        output = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(dict.fromkeys(re.findall(r"^\s*(\S+)\s*=>\s*not found", output, flags=re.MULTILINE)))


def missing_library_message(platform: str, missing: list[str]) -> str:
    """One line: what is missing, the apt command, and what to do on other systems."""
    debian = " ".join(dict.fromkeys(debian_package(library) for library in missing))
    fedora = [PACKAGES[library][1] for library in missing if library in PACKAGES]
    elsewhere = f" (Fedora: sudo dnf install {' '.join(dict.fromkeys(fedora))})" if fedora else ""
    them = "it" if len(missing) == 1 else "them"
    return (
        f"phpq-app: Qt's {platform} display plugin cannot load because this system lacks {', '.join(missing)}."
        f" On Debian/Ubuntu run: sudo apt install {debian}; elsewhere install the package that provides"
        f" {them}{elsewhere}. The command line, phpq, does not need {them}."
    )


def x11_display_error(display: str) -> str | None:
    """None when the X server at ``display`` accepts a connection, else why not."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError as error:
        return str(error)
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    failed = xcb.xcb_connection_has_error(connection)
    xcb.xcb_disconnect(connection)
    return f"the X server refused or did not answer (xcb error {failed})" if failed else None


def _platform_problem(
    platform: str, env: Mapping[str, str], plugin_dir: Path, load: Loader, display_error: Callable[[str], str | None]
) -> str | None:
    plugin = plugin_dir / PLUGIN_FILES[platform]
    if plugin.is_file():
        missing = missing_libraries(plugin, load)
        if missing:
            return missing_library_message(platform, missing)
    if platform == "xcb":
        display = env.get("DISPLAY", "")
        if not display:
            return (
                "phpq-app: no display to open the window on (DISPLAY is not set). Start it from a desktop"
                " session, or over SSH with ssh -X; the command line, phpq, works without a display."
            )
        reason = display_error(display)
        if reason is not None:
            return (
                f"phpq-app: cannot open the display {display}: {reason}. Check that the desktop session is"
                " running and that DISPLAY is right; the command line, phpq, works without a display."
            )
        return None
    name = env.get("WAYLAND_DISPLAY", "wayland-0")
    socket = Path(name) if Path(name).is_absolute() else Path(env.get("XDG_RUNTIME_DIR", "/nonexistent")) / name
    if not socket.exists():
        return f"phpq-app: no Wayland display at {socket}. Start it from a desktop session."
    return None


def platform_problem(
    env: Mapping[str, str] | None = None,
    plugin_dir: Path | None = None,
    load: Loader = load_library,
    display_error: Callable[[str], str | None] = x11_display_error,
    platform: str = sys.platform,
) -> str | None:
    """None when Qt can open a window here, else one line saying what is missing and how to fix it."""
    if not platform.startswith("linux"):
        return None
    env = os.environ if env is None else env
    candidates = candidate_platforms(env)
    if not candidates or any(name not in PLUGIN_FILES for name in candidates):
        return None  # offscreen, minimal, vnc, eglfs...: nothing to check
    if plugin_dir is None:
        from PySide6.QtCore import QLibraryInfo

        plugin_dir = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    problems = [_platform_problem(name, env, plugin_dir, load, display_error) for name in candidates]
    if not all(problems):
        return None
    log.debug("platform problems: %s", problems)
    return problems[candidates.index("xcb")] if "xcb" in candidates else problems[0]
