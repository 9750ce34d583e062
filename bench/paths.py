"""Where the bench finds the project: the repository, its bench folder and the project's venv (danlu, python)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"
DANLU = str(VENV_BIN / "danlu")
PYTHON = str(VENV_BIN / "python")
