"""The docs tell the truth: their links resolve, every `danlu ...` they show is a command danlu accepts, every
config file they show composes, and the examples that need no cluster run as shown. No Slurm needed."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from danlu_helpers import REPO, danlu, private_env  # noqa: E402

if TYPE_CHECKING:
    from launcher.spec.options import RunSpec

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
README_LIMIT = 12_000  # bytes: the README is read in five minutes; the rest belongs in docs/
BENCH_MARKERS = ("<!-- bench/run.py writes this table -->", "<!-- end of the table bench/run.py writes -->")

# ------------------------------------------------------------------------------------------------------------------
# Reading a page: fenced blocks, prose, headings
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its lines, and the last line of prose before it."""

    lang: str
    lines: Tuple[str, ...]
    before: str
    line_no: int  # of the opening fence, counted from 1


FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


def split_page(text: str) -> Tuple[List[Block], str]:
    """The fenced blocks of a page, and its prose with the blocks blanked out (line numbers kept)."""
    blocks: List[Block] = []
    prose: List[str] = []
    lines = text.splitlines()
    i, before = 0, ""
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            if lines[i].strip():
                before = lines[i]
            i += 1
            continue
        fence, start, body = m.group(2), i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append(Block(m.group(3).lower(), tuple(body), before, start + 1))
        prose.extend([""] * (i - start + 1))
        i += 1
    return blocks, "\n".join(prose)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set:
    _, prose = split_page(path.read_text())
    seen: Dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        m = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


# ------------------------------------------------------------------------------------------------------------------
# (a) links
# ------------------------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def link_problems(page: Path, text: str) -> List[str]:
    """Every relative link of a page that points at no file, or at a heading its target does not have."""
    problems = []
    _, prose = split_page(text)
    prose = re.sub(r"`[^`\n]*`", "", prose)  # code spans are not links
    for n, line in enumerate(prose.splitlines(), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                problems.append(f"{page.name}:{n}: link to {target!r}: no such file {file_part!r}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{page.name}:{n}: link to {target!r}: {dest.name} has no heading #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_a_file_and_heading(page: Path) -> None:
    problems = link_problems(page, page.read_text())
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    orphans = [p.name for p in PAGES if p.parent.name == "docs" and f"docs/{p.name}" not in readme]
    assert not orphans, f"pages no one finds from the README: {orphans}"


def test_readme_is_short_and_keeps_the_benchmark_markers() -> None:
    readme = (REPO / "README.md").read_text()
    size = len(readme.encode())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move the details into a page of docs/"
    start, end = (readme.find(m) for m in BENCH_MARKERS)
    assert 0 <= start < end, "bench/run.py rewrites the table between its two markers: keep both, in order"


# ------------------------------------------------------------------------------------------------------------------
# (b) every `danlu ...` shown is a command danlu's own parser accepts
# ------------------------------------------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    """The line without its shell comment (an unquoted `#` at the start of a word)."""
    quote = ""
    for i, c in enumerate(line):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def shell_segments(line: str) -> List[str]:
    """The simple commands of a shell line: split at unquoted |, ||, &&, ; and &, with each `$(...)` taken out as
    a command of its own (and left as a word in its place)."""
    out: List[str] = []
    cur: List[str] = []
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = "" if c == "'" else quote
        elif c == "$" and line[i + 1 : i + 2] == "(":
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            out.extend(shell_segments(line[i + 2 : j - 1]))
            cur.append("SUBST")
            i = j
            continue
        elif quote == '"':
            quote = "" if c == '"' else quote
        elif c in "'\"":
            quote = c
        elif c in "|;&":
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def danlu_argv(segment: str) -> Optional[List[str]]:
    """The arguments of a `danlu ...` command (None for any other command); leading VAR=value are skipped."""
    try:
        words = shlex.split(segment)
    except ValueError:
        words = segment.split()
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    return words[1:] if words and words[0] == "danlu" else None


def block_commands(block: Block) -> List[Tuple[str, List[str]]]:
    """(command line, the output shown after it) of each command a shell or console block shows."""
    lines = list(block.lines)
    console = any(ln.startswith("$ ") for ln in lines)
    if block.lang not in ("bash", "sh", "shell", "console") and not console:
        return []
    found: List[Tuple[str, List[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if console and not line.startswith("$ "):
            if found:
                found[-1][1].append(line)
            i += 1
            continue
        text = line[2:] if console else line
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        text = _strip_comment(text).strip()
        if text:
            found.append((text, []))
    return found


def synopsis_lines(block: Block) -> List[str]:
    """The lines of a plain block that spell commands with placeholders (`danlu logs RUN [--tail N]`)."""
    if block.lang or any(ln.startswith("$ ") for ln in block.lines):
        return []
    return [ln for ln in block.lines if ln.startswith("danlu ")]


def _parser() -> argparse.ArgumentParser:
    from launcher.cli.parser import build_parser

    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> Set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def option_problems(words: List[str], where: str) -> List[str]:
    """Check a command shown with placeholders: its verb (and action) exist, and each of its options is one that
    verb takes. Positional words are not checked: they may be placeholders (RUN, SWEEP, OVERRIDE ...). Words after `--`
    are a command danlu runs elsewhere (danlu attach RUN -- py-spy dump --pid N), not danlu's."""
    words = words[: words.index("--")] if "--" in words else words
    parser = _parser()
    verbs = _subparsers(parser)
    if not words or words[0].startswith("-"):
        unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in _options(parser)]
        return [f"{where}: danlu has no option {unknown[0]}"] if unknown else []
    if words[0].isupper():  # a placeholder: `danlu COMMAND --help`
        return []
    if words[0] not in verbs:
        return [f"{where}: danlu has no command {words[0]!r} (commands: {', '.join(verbs)})"]
    verb = verbs[words[0]]
    actions = _subparsers(verb)
    if len(words) > 1 and words[1] in actions:
        verb = actions[words[1]]
    known = _options(verb)
    return [
        f"{where}: `danlu {words[0]}` has no option {w.split('=')[0]}"
        for w in words[1:]
        if re.match(r"^--?[A-Za-z]", w) and w.split("=")[0] not in known
    ]


def parse_problems(argv: List[str], where: str) -> List[str]:
    """Check a command shown as one would type it: danlu's own parser accepts it (SystemExit 2 means refused).

    As `danlu` itself does (launcher/cli/__init__.py), overrides may follow options: what argparse leaves over is
    more overrides for a verb that takes them, and refused otherwise."""
    import contextlib
    import io

    first = option_problems(argv, where)  # the clearer message for an unknown command or option
    if first:
        return first
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args, extra = _parser().parse_known_args(argv)
    except SystemExit as e:
        if e.code in (0, None):  # --help and --version exit 0
            return []
        said = " ".join(stderr.getvalue().split())
        return [f"{where}: danlu refuses `danlu {' '.join(argv)}`: {said}"]
    left = [e for e in extra if e.startswith("-")] if hasattr(args, "overrides") else extra
    return [f"{where}: danlu refuses `danlu {' '.join(argv)}`: unrecognized {' '.join(left)}"] if left else []


def command_problems(page_name: str, text: str) -> List[str]:
    """Every `danlu ...` a page shows that danlu would refuse: in shell and console blocks (parsed as typed), in
    synopsis blocks and in inline code (verb and options only: those may hold placeholders)."""
    blocks, prose = split_page(text)
    problems: List[str] = []
    for block in blocks:
        for n, line in enumerate(synopsis_lines(block)):
            words = _strip_comment(line).split()[1:]
            problems += option_problems(words, f"{page_name}:{block.line_no + 1 + n}")
        for command, _ in block_commands(block):
            for segment in shell_segments(command):
                argv = danlu_argv(segment)
                if argv is not None:
                    problems += parse_problems(argv, f"{page_name}:{block.line_no}")
    for n, line in enumerate(prose.splitlines(), 1):
        for span in re.findall(r"`([^`\n]*\bdanlu [^`\n]*)`", line):
            for segment in shell_segments(span):
                argv = danlu_argv(segment)
                if argv is not None:
                    problems += option_problems([w for w in argv if w not in ("...", "|")], f"{page_name}:{n}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_danlu_command_shown_is_one_danlu_accepts(page: Path) -> None:
    problems = command_problems(page.name, page.read_text())
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------------------------
# (c) every config file shown composes with danlu's own composer
# ------------------------------------------------------------------------------------------------------------------

CONFIG_PATH = re.compile(r"jobs/([\w-]+)/([\w.-]+)\.yaml")


@dataclass(frozen=True)
class Snippet:
    page: str
    group: str
    name: str
    text: str

    @property
    def rel(self) -> str:
        return f"{self.group}/{self.name}.yaml"


def config_snippets(pages: List[Path] = PAGES) -> List[Snippet]:
    """The ```yaml blocks shown as a config file: the prose just before the block (or the block's first comment)
    names its path, `jobs/<group>/<name>.yaml`."""
    found = []
    for page in pages:
        for block in split_page(page.read_text())[0]:
            if block.lang not in ("yaml", "yml"):
                continue
            first = block.lines[0] if block.lines and block.lines[0].startswith("#") else ""
            m = CONFIG_PATH.search(block.before) or CONFIG_PATH.search(first)
            if m:
                found.append(Snippet(page.name, m.group(1), m.group(2), "\n".join(block.lines) + "\n"))
    return found


SNIPPETS = config_snippets()


def _compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snippet: Snippet) -> RunSpec:
    """Compose the run a user would get with this file in their config dir (beside the other files the docs show),
    as `danlu submit --config-dir DIR` does; returns its RunSpec."""
    from launcher.spec.compose import Composer

    cfg = tmp_path / "configs"
    others = {s.rel: s for s in reversed(SNIPPETS) if s.rel != "local/default.yaml"}
    for s in [*others.values(), snippet]:
        (cfg / s.group).mkdir(parents=True, exist_ok=True)
        (cfg / s.rel).write_text(s.text)
    # as on a login node: Slurm's sbatch is here (so the default cluster is the user's), no configs of this machine
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    if snippet.group == "local":
        overrides = ["experiment=tiny_dpo"]
    elif snippet.group == "cluster":
        overrides = ["experiment=tiny_dpo", f"cluster={snippet.name}"]
    elif snippet.group == "experiment":
        overrides = [f"experiment={snippet.name}", "cluster=local"]
    else:
        overrides = ["experiment=tiny_dpo", "cluster=local", f"{snippet.group}={snippet.name}"]
    return Composer(config_dir=str(cfg)).runs(overrides)[0].spec


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: f"{s.page}:{s.rel}")
def test_every_config_file_shown_composes(snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _compose(tmp_path, monkeypatch, snippet)
    if snippet.group == "cluster":
        assert spec.cluster.name == snippet.name, "a profile's name: is the name of its file"
    if snippet.group == "local":
        chosen = re.search(r"override /cluster:\s*(\S+)", snippet.text)
        if chosen:
            assert spec.cluster.name == chosen.group(1), "the default cluster shown is the one a submit gets"


def test_the_shown_default_cluster_file_needs_its_package_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs say why `# @package _global_` opens jobs/local/default.yaml: without it Hydra cannot compose."""
    from launcher.errors import UserError

    defaults = [s for s in SNIPPETS if s.rel == "local/default.yaml"]
    assert defaults, "the docs show how to make a cluster the default"
    for s in defaults:
        assert s.text.startswith("# @package _global_\n"), f"{s.page}: the default cluster file needs its first line"
        bare = Snippet(s.page, s.group, s.name, s.text.split("\n", 1)[1])
        with pytest.raises(UserError, match=r"Could not override 'cluster@local\.cluster'"):
            _compose(tmp_path / s.page, monkeypatch, bare)


# ------------------------------------------------------------------------------------------------------------------
# (d) the commands that need no cluster run, and (e) the errors shown are the errors danlu gives
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    page: str
    command: str
    argv: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...]  # the block's `export VAR=value` lines before the command
    error: str = ""  # the `error:` line shown after it
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.page}: {self.command}"


def _needs_no_cluster(argv: List[str]) -> bool:
    """A command that asks nothing of Slurm: help, options, completion, env list, a dry run on the local cluster."""
    if not argv or "--help" in argv or "-h" in argv or argv[0] in ("options", "completion", "--version"):
        return True
    if argv[:2] == ["env", "list"]:
        return True
    return argv[0] == "submit" and "--dry-run" in argv and "cluster=local" in argv


def examples(pages: List[Path] = PAGES) -> List[Example]:
    """The commands a page shows that can run here, each with the error and hint shown after it, if any."""
    found = []
    for page in pages:
        for block in split_page(page.read_text())[0]:
            env: List[Tuple[str, str]] = []
            for command, output in block_commands(block):
                segments = shell_segments(command)
                if len(segments) == 1 and segments[0].startswith("export "):
                    exported = [w.partition("=") for w in shlex.split(segments[0])[1:] if "=" in w]
                    env += [(name, value) for name, _, value in exported]
                    continue
                for segment in segments:
                    argv = danlu_argv(segment)
                    if argv is None:
                        continue
                    error = next((ln for ln in output if ln.startswith("error: ")), "")
                    hint = next((ln for ln in output if ln.startswith("hint: ")), "")
                    if error or _needs_no_cluster(argv):
                        found.append(Example(page.name, segment, tuple(argv), tuple(env), error, hint))
    return found


EXAMPLES = examples()


def _run(example: Example, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a shown command as a user would, with a store, home and configs of its own."""
    env = private_env(tmp_path)
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "xdg"), COLUMNS="120")
    env.update(dict(example.env))
    argv = list(example.argv)
    if example.error and argv[0] in ("submit", "rerun") and "--dry-run" not in argv:
        argv.append("--dry-run")  # the same verdict as the submit shown, and nothing queued whatever happens
    (tmp_path / "home").mkdir()
    return danlu(*argv, env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.error], ids=str)
def test_every_command_shown_that_needs_no_cluster_runs(example: Example, tmp_path: Path) -> None:
    done = _run(example, tmp_path)
    assert done.returncode == 0, f"`{example.command}` exited {done.returncode}:\n{done.stderr[-2000:]}"


def _shown(line: str) -> re.Pattern:
    """A shown line as a pattern: `...` stands for whatever the machine says there (paths, ids)."""
    return re.compile("^" + ".*".join(re.escape(" ".join(p.split())) for p in line.split("...")) + "$")


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.error], ids=str)
def test_every_error_shown_is_the_error_danlu_gives(example: Example, tmp_path: Path) -> None:
    done = _run(example, tmp_path)
    said = [" ".join(ln.split()) for ln in done.stderr.splitlines()]
    assert done.returncode == 2, f"`{example.command}` exited {done.returncode}, not 2 (bad input):\n{done.stderr}"
    for shown in (example.error, example.hint):
        if shown:
            assert any(_shown(shown).match(ln) for ln in said), f"shown: {shown}\ndanlu says:\n{done.stderr}"


def test_the_checks_find_something_to_check() -> None:
    """A change to how pages are read must not leave the checks above with nothing to look at."""
    assert len(SNIPPETS) >= 3
    assert sum(1 for e in EXAMPLES if e.error) >= 5
    assert sum(1 for e in EXAMPLES if not e.error) >= 3


# ------------------------------------------------------------------------------------------------------------------
# The checks themselves find what they are for
# ------------------------------------------------------------------------------------------------------------------


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A page\n\n## Its part\n")
    page = tmp_path / "page.md"
    text = "See [a](other.md#its-part), [b](missing.md), [c](other.md#no-such-part) and `[d](ignored.md)`.\n"
    problems = link_problems(page, text)
    assert len(problems) == 2, problems
    assert "no such file 'missing.md'" in problems[0]
    assert "other.md has no heading #no-such-part" in problems[1]


def test_an_unknown_verb_or_option_is_reported() -> None:
    text = (
        "```bash\n"
        "danlu status --all   # fine\n"
        "danlu sumbit experiment=tiny_dpo\n"
        "```\n"
        "```\n"
        "$ danlu logs RUN --tail 5 \\\n"
        "    --colour\n"
        "output danlu nope\n"
        "```\n"
        'Or `eval "$(danlu completion fish)"`, or `danlu rerun SWEEP --frobnicate`.\n'
    )
    problems = command_problems("page.md", text)
    assert len(problems) == 3, problems  # output lines and positional words (placeholders in prose) are not commands
    assert "danlu has no command 'sumbit'" in problems[0]
    assert "`danlu logs` has no option --colour" in problems[1]
    assert "`danlu rerun` has no option --frobnicate" in problems[2]
