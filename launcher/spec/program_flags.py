"""A program's own command-line flags, read from its source before anything is queued.

Most training programs declare their flags with argparse (`parser.add_argument("--beta_dpo", type=float,
default=5000, help=...)`). Those calls are read statically (Python's `ast`): the program and its heavy imports
(torch, diffusers) are never imported on the login node. What cannot be read this way is said, not guessed:
LightningCLI / jsonargparse, click and Hydra programs build their flags at run time, and an argparse program that
calls `parse_known_args` hands unknown arguments on (taming-transformers' `main.py` reads them as a config
dotlist), so an unknown flag is not an error there.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Flag:
    """One `add_argument` call that declares an option (`--name` / `-n`)."""

    options: Tuple[str, ...]  # as declared: ("-b", "--base")
    dest: str
    default: Any = None  # the literal default (None when there is none or it is computed)
    default_text: str = ""  # the default as written in the source ("" when there is none)
    type: Optional[str] = None  # the name given to type= ("int", "float", "str", "str2bool", ...)
    choices: Optional[Tuple[Any, ...]] = None  # literal choices=
    action: Optional[str] = None  # "store_true", "store_false", "append", ...
    nargs: Optional[str] = None  # as written: "?", "*", "+", "2"
    required: bool = False
    help: str = ""

    @property
    def name(self) -> str:
        """The long option without dashes, as an `args.NAME` key renders it (`--NAME=value`)."""
        longs = [o for o in self.options if o.startswith("--")]
        return (longs[0] if longs else self.options[0]).lstrip("-")

    @property
    def shown_default(self) -> str:
        """The default as a user would write it: the literal value, else the source expression."""
        if not self.default_text:
            return {"store_true": "false", "store_false": "true"}.get(self.action or "", "(none)")
        if self.default is None and self.default_text != "None":
            return self.default_text  # computed at run time: os.environ.get(...), list(), ...
        return str(self.default)

    @property
    def takes_value(self) -> bool:
        return self.action not in ("store_true", "store_false", "store_const", "count", "help", "version")


@dataclass(frozen=True)
class ProgramFlags:
    """What the source says about a program's flags."""

    path: str
    parser: str  # "argparse", "lightningcli", "jsonargparse", "click", "hydra", "unknown"
    flags: Tuple[Flag, ...] = ()
    passes_unknown: bool = False  # parse_known_args: unknown flags go on to the program
    abbrev: bool = True  # argparse's allow_abbrev: a unique prefix of a flag stands for it

    @property
    def checkable(self) -> bool:
        """Every flag is known and an unknown one is an error of the program: refuse it before the queue."""
        return self.parser == "argparse" and bool(self.flags) and not self.passes_unknown

    def why_not_checked(self) -> str:
        if self.parser == "argparse" and self.passes_unknown:
            return "passes unknown arguments on (parse_known_args)"
        if self.parser == "argparse":
            return "declares no option with add_argument"
        if self.parser == "unknown":
            return "does not declare its flags with argparse"
        return f"builds its flags at run time ({self.parser})"

    def by_option(self) -> Dict[str, Flag]:
        return self._table

    @cached_property
    def _table(self) -> Dict[str, Flag]:  # once per program, not per key of every run of a sweep
        return {o: f for f in self.flags for o in f.options}

    def find(self, key: str) -> Optional[Flag]:
        """The flag that `args.KEY` (rendered `--KEY`) names exactly; short options count as `-K`."""
        table = self.by_option()
        return table.get(f"--{key}") or (table.get(f"-{key}") if len(key) == 1 else None)

    def expansions(self, key: str) -> List[Flag]:
        """Flags of which `--KEY` is a prefix: what argparse would silently take it for."""
        if not self.abbrev:
            return []
        seen: Dict[str, Flag] = {}
        for option, flag in self.by_option().items():
            if option.startswith("--") and option.startswith(f"--{key}") and option != f"--{key}":
                seen.setdefault(flag.dest, flag)
        return list(seen.values())

    def similar(self, key: str, n: int = 1) -> List[str]:
        names = sorted({o.lstrip("-") for o in self.by_option() if o.startswith("--")})
        swapped = key.replace("-", "_") if "-" in key else key.replace("_", "-")
        if swapped != key and swapped in names:
            return [swapped]
        import difflib

        return difflib.get_close_matches(key, names, n=n, cutoff=0.6)


def _literal(node: Optional[ast.expr]) -> Any:
    if node is None:
        return _NO_DEFAULT
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NO_DEFAULT


def _name(node: Optional[ast.expr]) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _flag(call: ast.Call) -> Optional[Flag]:
    options = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not options or not all(o.startswith("-") for o in options):
        return None  # a positional argument
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    longs = [o for o in options if o.startswith("--")]
    dest = _literal(kw.get("dest"))
    if not isinstance(dest, str):
        dest = (longs[0] if longs else options[0]).lstrip("-").replace("-", "_")
    default = _literal(kw.get("default"))
    default_text = (
        "" if "default" not in kw else repr(default) if default is not _NO_DEFAULT else ast.unparse(kw["default"])
    )  # computed at run time: shown as written
    choices = _literal(kw.get("choices"))
    nargs = kw.get("nargs")
    helptext = _literal(kw.get("help"))
    required = _literal(kw.get("required"))
    action = _name(kw.get("action"))
    return Flag(
        options=tuple(options),
        dest=dest,
        default=None if default is _NO_DEFAULT else default,
        default_text=default_text,
        type=_name(kw.get("type")),
        choices=tuple(choices) if isinstance(choices, (list, tuple, set)) else None,
        action=action,
        nargs=None
        if nargs is None
        else str(_literal(nargs) if _literal(nargs) is not _NO_DEFAULT else ast.unparse(nargs)),
        required=required is True,
        help=" ".join(helptext.split()) if isinstance(helptext, str) else "",
    )


def _parser_kind(text: str) -> str:
    if "LightningCLI" in text:
        return "lightningcli"
    if "jsonargparse" in text:
        return "jsonargparse"
    if "@hydra.main" in text or "hydra.main(" in text:
        return "hydra"
    if "import click" in text or "@click." in text:
        return "click"
    if "argparse" in text or ".add_argument(" in text:
        return "argparse"
    return "unknown"


_CALL = re.compile(
    r"\.(add_argument|ArgumentParser|parse_known_args|parse_known_intermixed_args)\s*\(|"
    r"\b(ArgumentParser)\s*\("
)
_TRIPLE = ("'" * 3, '"' * 3)


_SCAN = re.compile(r"[()\[\]{}'\"#]")


def _call_end(text: str, start: int) -> int:
    """The index after the `)` closing the call whose `(` is at `start` (strings and comments skipped); -1."""
    depth, i = 0, start
    while True:
        m = _SCAN.search(text, i)
        if m is None:
            return -1
        i, c = m.start(), m.group()
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == "#":
            i = text.find("\n", i)
            if i < 0:
                return -1
        else:
            quote = text[i : i + 3] if text[i : i + 3] in _TRIPLE else c
            j = i + len(quote)
            while True:
                j = text.find(quote, j)
                if j < 0:
                    return -1
                backslashes = len(text[:j]) - len(text[:j].rstrip("\\"))
                if backslashes % 2 == 0:
                    break
                j += 1
            i = j + len(quote) - 1
        i += 1


def _calls_only(text: str) -> Optional[str]:
    """Only the calls that matter (add_argument, ArgumentParser, parse_known_args), one statement each: parsing
    those is what reading a long program's flags costs, not its thousand other lines. None if one is cut off."""
    parts = []
    for m in _CALL.finditer(text):
        end = _call_end(text, m.end() - 1)
        if end < 0:
            return None
        parts.append("(_." + text[m.start() + (1 if text[m.start()] == "." else 0) : end] + ")")
    return "\n".join(parts)


def parse_source(text: str, path: str = "<program>") -> ProgramFlags:
    """The flags declared in a program's source (no import, no execution)."""
    kind = _parser_kind(text)
    if kind != "argparse":
        return ProgramFlags(path=path, parser=kind)
    nodes = _parsed(text, path)
    if nodes is None:
        return ProgramFlags(path=path, parser="unknown")
    flags: List[Flag] = []
    passes_unknown = False
    abbrev = True
    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        if not isinstance(node.func, ast.Attribute):
            if _name(node.func) == "ArgumentParser":
                abbrev = abbrev and _allows_abbrev(node)
            continue
        attr = node.func.attr
        if attr == "add_argument":
            flag = _flag(node)
            if flag is not None:
                flags.append(flag)
        elif attr in ("parse_known_args", "parse_known_intermixed_args"):
            passes_unknown = True
        elif attr == "ArgumentParser":
            abbrev = abbrev and _allows_abbrev(node)
    return ProgramFlags(path=path, parser=kind, flags=tuple(flags), passes_unknown=passes_unknown, abbrev=abbrev)


def _parsed(text: str, path: str) -> Optional[Iterable[ast.AST]]:
    """The nodes to look at: the calls alone, each one expression statement (no walk through the tree needed), else
    every node of the whole source; None if the source does not parse."""
    calls = _calls_only(text)
    if calls is not None:
        try:
            return [stmt.value for stmt in ast.parse(calls, filename=path).body if isinstance(stmt, ast.Expr)]
        except (SyntaxError, ValueError):
            pass
    try:
        return ast.walk(ast.parse(text, filename=path))
    except (SyntaxError, ValueError):
        return None


def _allows_abbrev(call: ast.Call) -> bool:
    """Whether an ArgumentParser(...) call leaves argparse's allow_abbrev on (unless it is literally False)."""
    return _literal(next((k.value for k in call.keywords if k.arg == "allow_abbrev"), None)) is not False


_CACHE: Dict[Tuple[str, int, int], ProgramFlags] = {}


def read_flags(path: Path) -> Optional[ProgramFlags]:
    """The program's flags (cached by path, size and mtime); None if the file cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        if path.suffix not in ("", ".py"):
            return ProgramFlags(path=str(path), parser="unknown")
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        _CACHE[key] = parse_source(text, str(path))
    return _CACHE[key]
