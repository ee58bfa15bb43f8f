"""The package layering of docs/ARCHITECTURE.md, checked on every module's imports (parsed with ast, nothing
imported): imports go one way along data -> masking -> models -> objectives -> engine -> train -> evaluate -> study ->
analysis -> report (then the demo and the benchmark command); errors.py, rundir.py and config.py are leaves
every layer shares; command modules (``cli.py``, ``__main__.py``) may import anything. No import cycles, and
``__init__.py`` files only re-export. Each rule is also shown to fail on a planted violation."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ["data", "masking", "models", "objectives", "engine", "train", "evaluate", "study", "analysis", "report",
          "demo", "bench"]
LEAVES = {"errors", "rundir", "config", "config_keys", "lazy"}
# config_docs.py writes docs/CONFIG.md from both schemas (`python -m mimscale.config_docs`): a command.
COMMAND_FILES = {"cli.py", "__main__.py", "config_docs.py"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / "mimscale").rglob("*.py"))}


def imports(path: Path, root: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported mimscale module, line, at module level) for every import statement, in functions too.
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "mimscale" or t.startswith("mimscale."):
                found.append((t, node.lineno, id(node) in top_level))
    return found


def layer(module: str) -> str | None:
    """The layer a module belongs to: its first name under mimscale (``mimscale.data.loader`` -> data)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(root: Path) -> list[str]:
    mods = modules(root)
    bad = []
    for mod, path in mods.items():
        if path.name in COMMAND_FILES or mod == "mimscale":
            continue
        mine = layer(mod)
        for target, line, _ in imports(path, root, set(mods)):
            theirs = layer(target)
            if theirs is None or theirs in LEAVES or theirs == mine:
                continue
            where = f"{path.relative_to(root)}:{line} imports {target}"
            if mine in LEAVES:
                bad.append(f"{where}: a leaf imports only leaves")
            elif theirs not in LAYERS or mine not in LAYERS:
                bad.append(f"{where}: not a documented layer ({mine} -> {theirs})")
            elif LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append(f"{where}: {mine} is below {theirs} (data -> masking -> ... -> report)")
    return bad


def cycles(root: Path) -> list[list[str]]:
    """Import cycles among modules (every import statement, lazy ones included: a cycle is a tangle even
    when it happens not to break at import time)."""
    mods = modules(root)
    graph = {m: sorted({t for t, _, _ in imports(p, root, set(mods)) if t in mods and t != m}) for m, p in mods.items()}
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "closed"

    for m in graph:
        if m not in state:
            visit(m)
    return found


def init_logic(root: Path) -> list[str]:
    """Statements of ``__init__.py`` files other than a docstring, imports, ``__all__`` / ``_NAMES`` /
    ``__version__`` and a ``__getattr__`` that resolves re-exported names lazily."""
    bad = []
    for path in sorted((root / "mimscale").rglob("__init__.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                continue
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in ("__all__", "_NAMES",
                                                                                          "__version__", "__getattr__")
                                                    for t in node.targets):
                continue
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                continue
            bad.append(f"{path.relative_to(root)}:{node.lineno}: {type(node).__name__}")
    return bad


def test_every_import_follows_the_documented_layering():
    assert violations(SRC) == []


def test_no_import_cycles():
    assert cycles(SRC) == []


def test_package_init_files_only_re_export():
    assert init_logic(SRC) == []


def test_the_module_map_names_every_module():
    """docs/ARCHITECTURE.md's module map mentions every package and top-level module."""
    doc = (SRC.parent / "docs" / "ARCHITECTURE.md").read_text()
    names = sorted({p.relative_to(SRC / "mimscale").parts[0] for p in (SRC / "mimscale").glob("*")
                    if p.suffix == ".py" or (p / "__init__.py").is_file()} - {"__init__.py", "configs"})
    missing = [n for n in names if f"`{n}" not in doc]
    assert missing == []


# ------------------------------------------------------------------ the checks fail on planted violations

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"mimscale/__init__.py": "", **files}.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    ({"mimscale/data/loader.py": "from mimscale.masking import MaskGenerator\n",
      "mimscale/masking.py": ""}, "data is below masking"),
    ({"mimscale/data/loader.py": "def f():\n    from ..train import loop\n",
      "mimscale/train/__init__.py": "", "mimscale/train/loop.py": ""}, "data is below train"),
    ({"mimscale/rundir.py": "import mimscale.study.store\n", "mimscale/study/__init__.py": "",
      "mimscale/study/store.py": ""}, "a leaf imports only leaves"),
    ({"mimscale/report/build.py": "from mimscale.extras import x\n", "mimscale/extras.py": ""},
     "not a documented layer"),
])
def test_a_planted_layering_violation_is_reported(tmp_path, files, expected):
    root = _tree(tmp_path, files)
    found = violations(root)
    assert len(found) == 1 and expected in found[0]


def test_allowed_imports_are_not_reported(tmp_path):
    root = _tree(tmp_path, {
        "mimscale/train/loop.py": "from mimscale.data import loader\nfrom mimscale import rundir, config\n",
        "mimscale/data/__init__.py": "", "mimscale/data/loader.py": "from . import sources\n",
        "mimscale/data/sources.py": "", "mimscale/rundir.py": "from mimscale.errors import X\n",
        "mimscale/errors.py": "", "mimscale/config.py": "",
        "mimscale/data/cli.py": "from mimscale.report import build\n"})
    assert violations(root) == []


def test_a_planted_cycle_is_reported(tmp_path):
    root = _tree(tmp_path, {"mimscale/data/__init__.py": "",
                            "mimscale/data/loader.py": "from .sources import FolderSource\n",
                            "mimscale/data/sources.py": "def f():\n    from .shards import ShardSource\n",
                            "mimscale/data/shards.py": "from .loader import _worker_init\n"})
    assert cycles(root) == [["mimscale.data.loader", "mimscale.data.sources", "mimscale.data.shards",
                             "mimscale.data.loader"]]


def test_logic_in_an_init_file_is_reported(tmp_path):
    root = _tree(tmp_path, {"mimscale/data/__init__.py": '"""doc"""\nfrom .x import y\n__all__ = ["y"]\n'
                                                         "def plan(a):\n    return a\n"})
    assert init_logic(root) == ["mimscale/data/__init__.py:4: FunctionDef"]
