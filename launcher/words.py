"""How messages count things: "1 node", "2 nodes" (never "node(s)"). Standard library only."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one: counted(1, "run") -> "1 run", counted(3, "GPU") -> "3 GPUs"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
