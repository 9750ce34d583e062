"""Every function of the package (and of bench/) is short enough to read in one screen and every module in one
sitting: measured with `ast`, so a growing function fails here before it fails a reader."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Tuple

from danlu_helpers import REPO

PKG = REPO / "launcher"
MEASURED = (PKG, REPO / "bench")  # the package, and the benchmark that measures it
MAX_FUNCTION_LINES = 60
MAX_BRANCH_POINTS = 20
MAX_MODULE_LINES = 400


# Each branch point adds one path through a function (as McCabe's complexity counts them).
_BRANCHES = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.IfExp, ast.comprehension, ast.match_case)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def branch_points(function: ast.AST) -> int:
    """The branch points of one function's own body: nested functions count for themselves."""
    count = 0
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        if isinstance(node, _FUNCTIONS) or isinstance(node, ast.ClassDef):
            continue
        if isinstance(node, _BRANCHES):
            count += 1
            if isinstance(node, ast.comprehension):
                count += len(node.ifs)
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        stack.extend(ast.iter_child_nodes(node))
    return count


def functions(path: Path) -> Iterator[Tuple[str, int, int]]:
    """(qualified name, lines, branch points) of every function and method in one module."""
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, prefix: str) -> Iterator[Tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, (child.end_lineno or child.lineno) - child.lineno + 1, branch_points(child)
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def _module(path: Path) -> str:
    return str(path.relative_to(REPO))


def oversized() -> Dict[str, str]:
    """Every function and module over a bound: its name (`path:qualified.name`, or the module's path) -> its
    measure."""
    over: Dict[str, str] = {}
    for path in sorted(p for root in MEASURED for p in root.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            over[_module(path)] = f"{lines} lines (a module's bound: {MAX_MODULE_LINES})"
        for name, length, branches in functions(path):
            if length > MAX_FUNCTION_LINES or branches > MAX_BRANCH_POINTS:
                over[f"{_module(path)}:{name}"] = f"{length} lines, {branches} branch points"
    return over


def test_branch_points_are_counted_per_function():
    tree = ast.parse(
        "def f(x):\n"
        "    if x and x > 1 or x < -1:\n"
        "        return [y for y in x if y]\n"
        "    def g():\n"
        "        while True:\n"
        "            pass\n"
        "    return 1 if x else 2\n"
    )
    f = tree.body[0]
    assert branch_points(f) == 1 + 2 + 2 + 1  # if, and/or, comprehension with its if, the conditional expression
    assert branch_points(f.body[1]) == 1  # g's while, counted for g only


def test_functions_are_measured_with_their_class():
    measured: Dict[str, Tuple[int, int]] = {
        name: (lines, branches) for name, lines, branches in functions(PKG / "dir_lock.py")
    }
    assert any(name.startswith("DirLock.") for name in measured), sorted(measured)


def test_no_function_or_module_over_its_bound():
    over = oversized()
    assert not over, (
        f"over {MAX_FUNCTION_LINES} lines or {MAX_BRANCH_POINTS} branch points (a function), or over "
        f"{MAX_MODULE_LINES} lines (a module):\n  " + "\n  ".join(f"{n}: {m}" for n, m in sorted(over.items()))
    )


def test_an_oversized_function_is_found(tmp_path):
    n = MAX_FUNCTION_LINES // 2 + 1  # two lines per branch: over both bounds
    body = "".join(f"        if x == {i}:\n            return {i}\n" for i in range(n))
    path = tmp_path / "big.py"
    path.write_text(f"class C:\n    def f(self, x):\n{body}")
    assert list(functions(path)) == [("C.f", 2 * n + 1, n)]
    assert n > MAX_BRANCH_POINTS and 2 * n + 1 > MAX_FUNCTION_LINES
