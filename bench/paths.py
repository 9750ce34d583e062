"""Where the bench finds the project: the repository, its bench folder and the project's venv (danlu, python)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"
DANLU = str(VENV_BIN / "danlu")
PYTHON = str(VENV_BIN / "python")


def handwritten_script(log_dir: Path, program: str, args: str) -> str:
    """bench/handwritten.sbatch filled in: what a researcher writes by hand for the tiny_dpo example's 2-node job."""
    text = (BENCH / "handwritten.sbatch").read_text()
    for key, value in {
        "@TIME@": "10",
        "@WORKDIR@": str(REPO / "examples" / "tiny_dpo"),
        "@LOGDIR@": str(log_dir),
        "@VENV@": str(REPO / ".venv"),
        "@PORT@": "29415",
        "@PROGRAM@": program,
        "@ARGS@": args,
    }.items():
        text = text.replace(key, value)
    return text
