"""Every Python file of the project parses with Python 3.10's grammar: Ubuntu 22.04's
/usr/bin/python3 is 3.10 and the install step builds the venv from it, so a 3.11-only
construct (except*, a generic class, ...) would break the lab there and nowhere else."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("lab", "nodes", "topologies", "captures", "bench", "tests", "scripts")


def python_files():
    files = [ROOT / "setup.py"]
    for folder in FOLDERS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if f.is_file()]


def syntax_errors(files, version=(3, 10)):
    """["file:line: message"] of the files that do not parse with `version`'s grammar."""
    errors = []
    for f in files:
        try:
            ast.parse(f.read_text(encoding="utf-8"), filename=str(f), feature_version=version)
        except SyntaxError as e:
            errors.append(f"{Path(f).relative_to(ROOT) if Path(f).is_relative_to(ROOT) else f}"
                          f":{e.lineno}: {e.msg}")
    return errors


def test_the_file_list_covers_the_project():
    names = {f.relative_to(ROOT).as_posix() for f in python_files()}
    for expected in ("setup.py", "lab/cli.py", "lab/doctor.py", "nodes/lisp/messages.py",
                     "topologies/model.py", "captures/report.py", "tests/conftest.py"):
        assert expected in names
    assert len(names) > 50


def test_every_module_parses_with_python_310_grammar():
    errors = syntax_errors(python_files())
    assert not errors, "not Python 3.10 syntax:\n" + "\n".join(errors)


@pytest.mark.parametrize("src, line", [
    ("x = 1\ntry:\n    pass\nexcept* ValueError:\n    pass\n", 2),   # 3.11: exception groups
    ("x = 1\nclass Box[T]:\n    pass\n", 2),                      # 3.12: type parameters
    ("type Point = tuple[float, float]\n", 1),                     # 3.12: type statement
])
def test_the_check_catches_newer_syntax_and_names_file_and_line(tmp_path, src, line):
    f = tmp_path / "new.py"
    f.write_text(src)
    errors = syntax_errors([f])
    assert len(errors) == 1
    where = errors[0].split(": ", 1)[0]
    assert where.rsplit(":", 1)[0] == str(f)
    assert line <= int(where.rsplit(":", 1)[1]) <= src.count("\n")


# Standard-library modules that Python 3.10 does not have: importing one is fine only
# inside a try whose handler catches ImportError (with a fallback, as nodes/config.py does).
NEW_IN_311 = {"tomllib", "wsgiref.types"}


def unguarded_imports(files):
    """["file:line: import X"] of imports of NEW_IN_311 modules outside such a try."""
    found = []
    for f in files:
        tree = ast.parse(Path(f).read_text(encoding="utf-8"), filename=str(f))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                                   "ModuleNotFoundError")
                    for h in node.handlers):
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name in NEW_IN_311 and id(node) not in guarded:
                    found.append(f"{f}:{node.lineno}: import {name}")
    return found


def test_no_unguarded_import_of_a_module_python_310_lacks():
    found = unguarded_imports(python_files())
    assert not found, "Python 3.10 has no such module (fall back to tomli):\n" + \
        "\n".join(found)


def test_the_import_check_sees_through_a_guard(tmp_path):
    bare, guarded = tmp_path / "bare.py", tmp_path / "guarded.py"
    bare.write_text("import os\nimport tomllib\n")
    guarded.write_text("try:\n    import tomllib\nexcept ModuleNotFoundError:\n"
                       "    import tomli as tomllib\n")
    assert unguarded_imports([bare, guarded]) == [f"{bare}:2: import tomllib"]
