"""No shell anywhere, SQL values always bound, no network at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(path for folder in ("phpq", "phpq_train", "bench", "docs") for path in (ROOT / folder).rglob("*.py"))
SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput", "spawnl", "spawnlp", "execl", "execlp"}
# The only values an f-string may splice into SQL: placeholder lists and fixed fragments chosen in code.
SQL_SPLICES = {"','.join('?' * len(chunk))", "','.join('?' * len(ids))", "column", "where"}


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            yield name, node


def test_no_shell_is_ever_used():
    assert SOURCES, "no sources found"
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for name, node in calls(tree):
            assert name not in SHELL_CALLS, f"{path}:{node.lineno} calls {name}"
            for keyword in node.keywords:
                if keyword.arg == "shell":
                    assert isinstance(keyword.value, ast.Constant) and keyword.value.value is False, (
                        f"{path}:{node.lineno} passes shell="
                    )


def test_sql_values_are_always_bound_parameters():
    checked = 0
    for path in SOURCES:
        source = path.read_text()
        for name, node in calls(ast.parse(source, str(path))):
            if name not in ("execute", "executemany") or not node.args:
                continue
            checked += 1
            statement = node.args[0]
            if isinstance(statement, ast.Name):  # built a line earlier: look at what it was built from
                statement = _assignment(ast.parse(source), statement.id, node.lineno) or statement
            for part in ast.walk(statement):
                if isinstance(part, ast.FormattedValue):
                    splice = ast.get_source_segment(source, part.value)
                    assert splice in SQL_SPLICES, f"{path}:{node.lineno} splices {splice!r} into SQL"
                assert not (isinstance(part, ast.BinOp) and isinstance(part.op, ast.Mod)), f"{path}:{node.lineno}"
                assert not (isinstance(part, ast.Attribute) and part.attr == "format"), f"{path}:{node.lineno}"
    assert checked > 20


def _assignment(tree: ast.AST, name: str, before: int) -> ast.AST | None:
    assignments = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and node.lineno < before
        and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
    ]
    return max(assignments, key=lambda node: node.lineno).value if assignments else None


NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from phpq.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_index_and_search_never_touch_the_network(tmp_path, tiny_model):
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=3)
    database = ["--db", str(tmp_path / "data" / "index.sqlite3"), "--cpu"]
    for arguments in (
        ["models", "import", str(tiny_model), "--activate"],
        ["add", str(photos)],
        ["search", str(next(photos.rglob("*.jpg")))],
        ["status"],
    ):
        run = subprocess.run([sys.executable, "-c", NO_NETWORK, *database, *arguments], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "network access attempted" not in run.stderr


# SQL runs in one module: every statement is an ``IndexDatabase`` method in phpq/db.py.
SQL_HOME = ROOT / "phpq" / "db.py"
SQL_CALLS = {"execute", "executemany", "executescript"}


def sql_outside_the_database_module(path: Path, source: str) -> list[str]:
    """Where ``source`` runs SQL or holds a SQLite connection itself (catching ``sqlite3.Error`` is fine)."""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        where = f"{path}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append(f"{where} calls .{node.func.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
            if any(module.split(".")[0] == "sqlite_utils" for module in modules):
                found.append(f"{where} imports sqlite_utils")
            if "sqlite3" in modules and any(not name.endswith(("Error", "Warning")) for name in names):
                found.append(f"{where} imports {names} from sqlite3")
        elif isinstance(node, ast.Attribute):
            target = node.value
            if isinstance(target, ast.Name) and target.id == "sqlite3" and not node.attr.endswith(("Error", "Warning")):
                found.append(f"{where} uses sqlite3.{node.attr}")
            if node.attr == "conn" or (node.attr == "db" and isinstance(target, ast.Attribute) and target.attr == "db"):
                found.append(f"{where} reaches into the index's connection (.{node.attr})")
    return found


def test_no_sql_outside_the_index_database():
    runtime = sorted(path for folder in ("phpq", "phpq_train") for path in (ROOT / folder).rglob("*.py"))
    assert SQL_HOME in runtime
    found = [
        line for path in runtime if path != SQL_HOME for line in sql_outside_the_database_module(path, path.read_text())
    ]
    assert not found, "SQL outside phpq/db.py (add an IndexDatabase method instead):\n" + "\n".join(found)
    # the check itself trips on each way of running SQL elsewhere, and passes a plain error handler
    planted = {
        "connection.execute('SELECT 1')": "calls .execute",
        "db.conn.executemany('DELETE FROM images', [])": "calls .executemany",
        "import sqlite3\nsqlite3.connect('index.sqlite3')": "uses sqlite3.connect",
        "from sqlite3 import connect": "imports ['connect'] from sqlite3",
        "import sqlite_utils": "imports sqlite_utils",
        "library.db.db['images'].insert({})": "reaches into the index's connection",
    }
    for source, message in planted.items():
        assert any(message in line for line in sql_outside_the_database_module(Path("planted.py"), source)), source
    assert not sql_outside_the_database_module(
        Path("ok.py"), "import sqlite3\ntry:\n    pass\nexcept sqlite3.Error:\n    pass\n"
    )
    assert sql_outside_the_database_module(SQL_HOME, SQL_HOME.read_text())  # and it sees the SQL where it lives
