"""The user install: the wheel holds the bundled model and icons, and runs `phpq` in a fresh virtual
environment with torch unavailable (what `pip install .` or `pipx install .` gives, without the train extra).

Offline, the fresh venv borrows the runtime's dependencies from the test environment (a .pth file
lists its site-packages folders, whether that environment is a venv or not) and the wheel is
installed into it with ``--no-deps``; torch is blocked there by an import hook, so nothing can lean on
the torch that the test environment has. A real `pipx install .` downloads the dependencies and needs
the network, so it is not run here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["phpq", "phpq_train", "assets", "pyproject.toml", "README.md"]
RUNTIME_SCRIPTS = {"phpq = phpq.cli:main", "phpq-app = phpq.gui.main:main"}

# Run inside the fresh venv: torch cannot be imported, every runtime module imports, `phpq status` works.
NO_TORCH = """
import importlib, importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: no train extra)", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
modules, training = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in modules:
    importlib.import_module(name)
needs_torch = []
for name in training:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        needs_torch.append(name)
from phpq.cli import main
code = main(["--db", sys.argv[3], "status"])
import contextlib, io, phpq
from phpq_train.cli import train_main
said = io.StringIO()
with contextlib.redirect_stderr(said):
    trained = train_main(["--print-config"])
print(json.dumps({"status": code, "app": phpq.__file__, "needs_torch": needs_torch, "torch": "torch" in sys.modules,
                  "train": [trained, said.getvalue()]}))
"""


def module_names(names: list[str], package: str) -> list[str]:
    """Importable module names of the wheel's ``.py`` files in ``package`` (``__main__`` left out)."""
    modules = []
    for name in names:
        if name.startswith(f"{package}/") and name.endswith(".py") and not name.endswith("__main__.py"):
            module = name[: -len(".py")].replace("/", ".")
            modules.append(module.removesuffix(".__init__"))
    return sorted(modules)


def imported_modules(source: bytes) -> set[str]:
    """Top-level names of every import in a module, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of a copy of the sources (so no build/ lands in the working tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    if importlib.util.find_spec("setuptools") is not None:  # build offline with it; else pip fetches it
        command += ["--no-build-isolation", "--no-index"]
    subprocess.run([*command, "-w", str(work / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = (work / "dist").glob("phpq_search-*.whl")
    return built


def test_the_wheel_holds_the_bundled_models_and_icons_and_needs_no_torch(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = {name.split("/")[0] for name in names if "/" in name and ".dist-info/" not in name}
        assert top_level == {"phpq", "phpq_train", "phpq_assets"}  # no generic names such as app or training
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
        scripts = archive.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()
        runtime_imports = {
            name: imported_modules(archive.read(name))
            for name in names
            if name.startswith("phpq/") and name[-3:] == ".py"
        }
    bundled = sorted(path.name for path in (ROOT / "assets" / "models").glob("*.onnx"))
    assert bundled and all(f"phpq_assets/models/{name}" in names for name in bundled)
    assert "phpq_assets/models/README.md" in names  # the model card
    assert "phpq_train/recipes/cub_cpu.toml" in names  # the training recipe, the only source of its values
    assert "phpq/gui/icons/phpq-search.svg" in names and "phpq/gui/icons/phpq-search-256.png" in names
    assert {line.strip() for line in scripts.splitlines()} >= RUNTIME_SCRIPTS
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    torch = [line for line in requirements if "torch" in line.split(";")[0] and "efficientnet" not in line]
    assert torch and all('extra == "train"' in line for line in torch)  # torch only with the train extra
    # no runtime module imports torch or the training code, not even lazily inside a function
    assert runtime_imports
    assert not [name for name, found in runtime_imports.items() if found & {"torch", "phpq_train"}]


@pytest.mark.skipif(sys.platform == "win32", reason="the venv layout below is POSIX")
def test_phpq_runs_from_the_wheel_in_a_fresh_venv_without_torch(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python, scripts = venv / "bin" / "python", venv / "bin"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PHPQ_DATA_DIR"] = str(tmp_path / "data")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    borrowed = [path for path in sys.path if Path(path).name in {"site-packages", "dist-packages"}]
    (Path(purelib) / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q", str(wheel)]
    subprocess.run(install, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=300)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)

    helped = run(str(scripts / "phpq"), "--help")
    assert helped.returncode == 0 and "status" in helped.stdout, helped.stderr
    assert run(str(scripts / "phpq-app"), "--help").returncode == 0
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    database = tmp_path / "index.sqlite3"
    args = [
        json.dumps(module_names(names, "phpq")),
        json.dumps(module_names(names, "phpq_train")),
    ]
    checked = run(str(python), "-c", NO_TORCH, *args, str(database))
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout.strip().splitlines()[-1])
    assert report["status"] == 0 and not report["torch"], report
    assert Path(report["app"]).is_relative_to(venv)  # the installed copy, not the working tree
    assert "phpq_train.model" in report["needs_torch"]  # the training code needs the train extra
    code, message = report["train"]  # phpq-train without it: one line that says what to install
    assert code == 2 and "phpq-search[train]" in message and "Traceback" not in message, message
    shown = run(str(scripts / "phpq"), "--db", str(database), "status", "--json")
    assert shown.returncode == 0, shown.stderr
    model = json.loads(shown.stdout)["model"]
    bundled = [path.stem for path in (ROOT / "assets" / "models").glob("*.onnx")]
    assert model["name"] in bundled and Path(model["path"]).is_relative_to(venv)  # the model in the wheel
    # the window starts from the wheel too (offscreen), with its icon, and is ready to search
    env["QT_QPA_PLATFORM"] = "offscreen"
    window = run(str(scripts / "phpq-app"), "--db", str(database), "--cpu", "--exit-when-ready")
    assert window.returncode == 0 and window.stdout.startswith("ready"), window.stdout + window.stderr
