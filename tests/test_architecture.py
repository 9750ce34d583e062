"""The package's shape, checked: no import circles, the job side apart from the login side, no reaching into
another module's private names, and a light `danlu --help` / `danlu status` path."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

from danlu_helpers import REPO

PKG = REPO / "launcher"
JOB_SIDE = "launcher.job"
SHARED = {
    "launcher",
    "launcher.layout",
    "launcher.node_agent",
    "launcher.webhook",
    "launcher.state",
    "launcher.state.failure",
    "launcher.state.reasons",
    "launcher.state.stack_text",
}  # standard library only: what the job side may import besides itself
# The one way into the job side from shared code: calling the unpickled agent runs the job side's part.
AGENT_CALL = ("launcher.node_agent", "launcher.job.agent")


def _edges(modules: Dict[str, Path]) -> Dict[str, Set[str]]:
    """module -> the launcher modules it imports, without the agent's call into the job side."""
    return {m: {t for t, _, _ in deps if t != m and (m, t) != AGENT_CALL} for m, deps in imports(modules).items()}


def _is_job_side(name: str) -> bool:
    return name == JOB_SIDE or name.startswith(JOB_SIDE + ".")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _is_package(name: str, modules: Dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports(modules: Dict[str, Path]) -> Dict[str, Set[Tuple[str, str, int]]]:
    """module -> {(imported launcher module, name imported from it or '', line)}: every import, at module level
    or inside a function (a lazy import is still a dependency)."""
    out: Dict[str, Set[Tuple[str, str, int]]] = {}
    for name, path in modules.items():
        package = name if _is_package(name, modules) else name.rpartition(".")[0]
        found: Set[Tuple[str, str, int]] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "launcher":
                        found.add((alias.name, "", node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "launcher":
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # `from . import slurm`: the submodule itself
                        found.add((sub, "", node.lineno))
                    else:
                        found.add((target, alias.name, node.lineno))
        out[name] = found
    return out


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (or a module importing itself): Tarjan."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_the_package():
    modules = _modules()
    graph = _edges(modules)
    assert AGENT_CALL[1] in {t for t, _, _ in imports(modules)[AGENT_CALL[0]]}, "the agent's call is not where said"
    # a package's parent is imported implicitly by Python; only the edges written in the code count
    assert len(graph) > 30
    assert _cycles(graph) == [], "import circles in launcher/"


def test_job_side_imports_nothing_of_the_login_side():
    modules = _modules()
    job = {m for m in modules if _is_job_side(m)}
    assert {"launcher.job.agent", "launcher.job.port", "launcher.job.__main__"} <= job
    edges = _edges(modules)
    bad = [(m, t) for m in sorted(job) for t in sorted(edges[m]) if t not in SHARED and not _is_job_side(t)]
    assert bad == [], "the job side imports the login side"
    for shared in sorted(SHARED - {"launcher", "launcher.state"}):
        assert edges[shared] <= SHARED, f"{shared} is shared by both sides: it imports only shared modules"


def test_login_side_imports_nothing_of_the_job_side():
    modules = _modules()
    login = {m for m in modules if not _is_job_side(m) and m not in SHARED}
    assert {"launcher.plan.planner", "launcher.submit.execute", "launcher.cli"} <= login
    edges = _edges(modules)
    bad = [(m, t) for m in sorted(login) for t in sorted(edges[m]) if _is_job_side(t)]
    assert bad == [], "the login side imports the job side: they meet only in files and the pickled agent"


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    bad = [
        (m, t, n, line)
        for m, deps in imports(modules).items()
        for t, n, line in deps
        if n.startswith("_") and not n.startswith("__") and t != m
    ]
    assert bad == [], "private names imported across modules"


def test_every_cli_verb_has_a_thin_module():
    from launcher.cli import VERBS
    from launcher.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(sub.choices) == sorted(VERBS)
    for verb in VERBS:
        path = PKG / "cli" / f"{verb}.py"
        assert path.exists(), verb
        assert "def run(" in path.read_text(), verb
        assert len(path.read_text().splitlines()) < 120, f"cli/{verb}.py should parse, call the library and print"


def _imported_by(code: str) -> Set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}


def test_help_and_status_paths_stay_light():
    heavy = {"torch", "accelerate", "lightning", "hydra", "jinja2", "submitit", "numpy", "omegaconf"}
    assert not heavy & _imported_by("import launcher.cli; launcher.cli.main(['--help'])")
    assert not heavy & _imported_by(
        "import launcher.cli.status, launcher.state.reconcile, launcher.views.table, launcher.submit.recovery"
    )


def test_job_side_agent_imports_no_torch():
    assert not {"torch", "accelerate", "hydra", "jinja2", "omegaconf"} & _imported_by(
        "import launcher.job.agent, launcher.job.port"
    )


# How "where does this run run" used to be asked all over: a job id's prefix, a profile's or a record's kind.
WHERE_TESTS = re.compile(r"""startswith\(\s*["']local-|\bis_local\(|cluster\.kind\s*[!=]=|cluster_kind["']\]\s*[!=]=""")


def test_where_runs_run_is_decided_by_the_backends_only():
    assert WHERE_TESTS.search('if row["cluster_kind"] == "local":') and WHERE_TESTS.search('j.startswith("local-")')
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted(PKG.rglob("*.py"))
        if not path.is_relative_to(PKG / "backends")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if WHERE_TESTS.search(line)
    ]
    assert found == [], "local vs Slurm decided outside launcher/backends/"
