"""The package's shape (issue: one concern per module, tools apart from the runtime).

Static checks over the source tree, no imports of the package:
* no module over 600 lines, no function over 80 lines of code (docstrings, blank lines and
  comment-only lines not counted), tools and the simulator included;
* the runtime modules import nothing from ``clip_perception.tools`` or ``clip_perception.sim``;
* none of the removed stand-ins (``_Precomputed``, ``_ModeConfig``) nor reaches into the
  encoder's private names (``getattr(enc, "_...")``) are left.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clip_perception"
MAX_MODULE_LINES = 600
MAX_FUNCTION_CODE_LINES = 80
#: Folders and modules that are tools, not runtime.
TOOL_PARTS = ("tools", "sim")
TOOL_MODULES = ("cli.py",)


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _is_runtime(path: Path) -> bool:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] not in TOOL_PARTS and rel.name not in TOOL_MODULES


def _code_lines(source: str) -> set:
    """Line numbers holding code: not blank, not only a comment, not part of a docstring."""
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.difference_update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def test_no_module_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_over_80_lines_of_code():
    long = {}
    for path in _modules():
        source = path.read_text(encoding="utf-8")
        code = _code_lines(source)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = len([ln for ln in code if node.lineno <= ln <= node.end_lineno])
                if n > MAX_FUNCTION_CODE_LINES:
                    long[f"{path.relative_to(PACKAGE)}::{node.name}"] = n
    assert long == {}


def test_code_line_counter_skips_docstrings_and_comments():
    source = 'def f():\n    """Doc.\n\n    More.\n    """\n    # comment\n\n    x = 1\n    return x\n'
    tree = ast.parse(source)
    fn = tree.body[0]
    code = _code_lines(source)
    assert sorted(ln for ln in code if fn.lineno <= ln <= fn.end_lineno) == [1, 8, 9]


def _imported_modules(path: Path, tree: ast.AST):
    """(line, absolute module name) of every import in ``path``'s ``tree``."""
    package = ["clip_perception", *path.relative_to(PACKAGE).parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, module
            for alias in node.names:  # "from . import tools"
                yield node.lineno, f"{module}.{alias.name}"


def test_runtime_imports_nothing_from_tools_or_sim():
    bad = []
    for path in _modules():
        if not _is_runtime(path):
            continue
        for line, module in _imported_modules(path, ast.parse(path.read_text(encoding="utf-8"))):
            parts = module.split(".")
            if parts[0] == "clip_perception" and len(parts) > 1 and parts[1] in TOOL_PARTS:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert bad == []


def test_no_stand_ins_or_private_encoder_reaches():
    hits = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        for needle in ("_Precomputed", "_ModeConfig", 'getattr(enc, "_'):
            if needle in text:
                hits.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert hits == []
