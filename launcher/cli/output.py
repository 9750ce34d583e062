"""How the CLI talks: data on stdout, messages on stderr."""

from __future__ import annotations

import sys


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
