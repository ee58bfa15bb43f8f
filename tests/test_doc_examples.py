"""Every study or config YAML example written in a docstring (src/**) or a doc (docs/*.md, README.md) loads and
validates: an example that fails when copied is a bug."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from mimscale.config import load_config
from mimscale.evaluate.config import from_spec
from mimscale.study.spec import TOP_KEYS, eval_settings, parse_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "src" / "mimscale" / "configs" / "studies"  # a docstring's example is read as a packaged study
CONFIG_SECTIONS = {"model", "objective", "data", "train"}


def _literal_blocks(doc: str) -> list[str]:
    """reStructuredText literal blocks: the indented lines after a paragraph ending in '::'."""
    blocks, lines = [], doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        body = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and not nxt.startswith((" ", "\t")):  # back at the paragraph's indentation
                break
            body.append(nxt)
        indent = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
        blocks.append("\n".join(b[indent:] for b in body))
    return blocks


def _docstring_blocks() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                found += [(f"{path.relative_to(ROOT)}", b) for b in _literal_blocks(doc or "")]
    return found


def _markdown_blocks() -> list[tuple[str, str]]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(r"^ *```(\w*)\n(.*?)^ *```", path.read_text(), re.M | re.S):
            found.append((f"{path.relative_to(ROOT)} ({m.group(1) or 'untagged'})", m.group(2)))
    return found


def _examples() -> list[tuple[str, str, dict]]:
    """(where, kind, document) of each block that is a study file or a pre-training config."""
    out = []
    for where, text in _docstring_blocks() + _markdown_blocks():
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if not isinstance(doc, dict):
            continue
        if "axes" in doc or "base_config" in doc or ("evals" in doc and set(doc) <= set(TOP_KEYS)):
            out.append((where, "study", doc))
        elif set(doc) & CONFIG_SECTIONS:
            out.append((where, "config", doc))
    return out


EXAMPLES = _examples()


def test_the_examples_are_found():
    assert any(where == "src/mimscale/study/spec.py" and kind == "study" for where, kind, _ in EXAMPLES)


@pytest.mark.parametrize("where, kind, doc", EXAMPLES, ids=[f"{w}:{k}" for w, k, _ in EXAMPLES])
def test_example_loads_and_validates(tmp_path, where, kind, doc):
    if kind == "study":
        study = parse_study(doc, where, base_dir=STUDIES)
        assert study.runs
        for spec in study.evals:
            from_spec(eval_settings(spec))  # every eval entry is a valid evaluation config
    else:
        path = tmp_path / "example.yaml"
        path.write_text(yaml.safe_dump(doc))
        load_config(path)
