"""Start-up without a usable display, and the desktop menu entry: what a user sees outside the window."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phpq.gui.integration import (
    ICON_SIZES,
    SVG_ICON,
    desktop_entry,
    entry_files,
    install_desktop_entry,
    png_icon,
    uninstall_desktop_entry,
    xdg_data_home,
)
from phpq.gui.preflight import candidate_platforms, debian_package, platform_problem

ROOT = Path(__file__).resolve().parents[1]


def app_env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    """The environment of a `python -m phpq` subprocess: a private data directory, then ``changes``."""
    env = {**os.environ, "PHPQ_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def missing_cursor_library(_plugin: Path) -> None:
    raise OSError("libxcb-cursor.so.0: cannot open shared object file: No such file or directory")


def test_a_missing_platform_library_gives_one_line_with_the_install_command(tmp_path):
    plugins = tmp_path / "platforms"
    plugins.mkdir()
    (plugins / "libqxcb.so").write_bytes(b"")  # ldd finds nothing in it, so dlopen's message names the library
    problem = platform_problem({"DISPLAY": ":0"}, plugins, load=missing_cursor_library, platform="linux")
    assert problem is not None and "\n" not in problem
    assert "libxcb-cursor.so.0" in problem and "sudo apt install libxcb-cursor0" in problem
    assert "dnf install xcb-util-cursor" in problem  # and what to do elsewhere
    # the plugin loads, so the display is what is missing
    works = lambda _plugin: None  # noqa: E731
    assert "DISPLAY is not set" in platform_problem({}, plugins, load=works, platform="linux")
    unreachable = platform_problem({"DISPLAY": ":9"}, plugins, load=works, display_error=lambda _: "refused")
    assert "cannot open the display :9: refused" in unreachable
    assert platform_problem({"DISPLAY": ":9"}, plugins, load=works, display_error=lambda _: None) is None
    # a Wayland session falls back to X11 only when that works too
    assert candidate_platforms({"XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    wayland = {"XDG_SESSION_TYPE": "wayland", "XDG_RUNTIME_DIR": str(tmp_path), "DISPLAY": ":9"}
    assert platform_problem(wayland, plugins, load=works, display_error=lambda _: None, platform="linux") is None
    (tmp_path / "wayland-0").touch()
    assert platform_problem({**wayland, "DISPLAY": ""}, plugins, load=works, platform="linux") is None
    # nothing to check for the offscreen plugin, nor on Windows and macOS
    assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}, plugins, load=missing_cursor_library) is None
    assert platform_problem({}, plugins, load=missing_cursor_library, platform="darwin") is None


def test_debian_package_names_follow_the_library_names():
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert debian_package("libfoo.so.2") == "libfoo2" and debian_package("libbar1.so.3") == "libbar1-3"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the platform check runs on Linux only")
@pytest.mark.parametrize("display", [None, ":187"])
def test_phpq_app_without_a_usable_display_exits_with_a_message_not_an_abort(tmp_path, display):
    """The real start-up path, with Qt asked for X11: no DISPLAY at all, or one no server answers on."""
    env = app_env(tmp_path, QT_QPA_PLATFORM="xcb", DISPLAY=display, WAYLAND_DISPLAY=None, XDG_SESSION_TYPE=None)
    result = subprocess.run(
        [sys.executable, "-m", "phpq"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phpq-app: "), result.stderr
    # the display is named, unless a system library is missing, which is then named with its apt command
    assert ("display" in lines[0]) or ("sudo apt install" in lines[0])
    assert "Reinstalling the application" not in result.stderr and not (tmp_path / "data").exists()


def test_the_desktop_entry_installs_only_under_the_xdg_data_dir_and_validates(tmp_path):
    home, data = tmp_path / "home", tmp_path / "xdg-data"
    home.mkdir()
    env = app_env(tmp_path, HOME=str(home), XDG_DATA_HOME=str(data), QT_QPA_PLATFORM="offscreen")
    run = [sys.executable, "-m", "phpq"]
    installed = subprocess.run([*run, "--install-desktop-entry"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    entry = data / "applications" / "phpq-search.desktop"
    assert entry.is_file() and str(entry) in installed.stdout
    written = {path for path in tmp_path.rglob("*") if path.is_file()}
    assert written <= {*entry_files(data), data / "applications" / "mimeinfo.cache"}  # nothing outside it
    assert set(entry_files(data)) <= written
    text = entry.read_text()
    assert "Icon=phpq-search" in text and "Exec=" in text and "%f" in text
    svg = data / "icons" / "hicolor" / "scalable" / "apps" / "phpq-search.svg"
    assert svg.read_bytes() == SVG_ICON.read_bytes()
    validator = shutil.which("desktop-file-validate")
    if validator is not None:
        checked = subprocess.run([validator, str(entry)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
    removed = subprocess.run([*run, "--uninstall-desktop-entry"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert removed.returncode == 0 and "Removed 9 files" in removed.stdout
    assert not any(path.is_file() for path in entry_files(data))


def test_exec_lines_quote_odd_paths_and_the_validator_accepts_them(tmp_path):
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate is not installed (apt-get install desktop-file-utils)")
    entry = tmp_path / "phpq-search.desktop"
    entry.write_text(desktop_entry(["/opt/my apps/$HOME\\x/phpq-app", "100%"]))
    assert 'Exec="/opt/my apps/\\\\$HOME\\\\\\\\x/phpq-app" 100%% %f' in entry.read_text()
    checked = subprocess.run([validator, str(entry)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout


def test_icons_are_bundled_in_every_size_and_install_in_process(tmp_path):
    from PySide6.QtGui import QImage

    for size in ICON_SIZES:
        image = QImage(str(png_icon(size)))
        assert (image.width(), image.height()) == (size, size)
    assert xdg_data_home({"XDG_DATA_HOME": "relative/ignored", "HOME": str(tmp_path)}) == tmp_path / ".local/share"
    files = install_desktop_entry(tmp_path, ["phpq-app"])
    assert files == entry_files(tmp_path) and all(path.is_file() for path in files)
    assert uninstall_desktop_entry(tmp_path) == files and uninstall_desktop_entry(tmp_path) == []
