"""`danlu completion bash|zsh`: print the shell's completion script (candidates: shell_complete.py)."""

from __future__ import annotations

from argparse import Namespace

from .shell_complete import script


def run(args: Namespace) -> int:
    print(script(args.shell), end="")
    return 0
