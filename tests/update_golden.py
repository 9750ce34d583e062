"""Regenerate the golden sbatch scripts in tests/golden/ from the current templates and planner.

    python tests/update_golden.py            # rewrite every golden file
    python tests/update_golden.py ibq vqgan  # only these

The golden-file tests (tests/test_render.py) never write these files: a missing or different golden file
fails them. After changing a template or the planner on purpose, run this, read the diff (git diff
tests/golden) and commit it with the change.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from danlu_helpers import fixed_golden_environment, render_experiment  # noqa: E402
from test_render import CASES, GOLDEN  # noqa: E402


def main(names: list) -> int:
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        print(f"error: no golden case {', '.join(unknown)}", file=sys.stderr)
        print(f"hint: cases are {', '.join(sorted(CASES))}", file=sys.stderr)
        return 2
    with fixed_golden_environment():
        for name in names or sorted(CASES):
            (script,) = render_experiment(CASES[name])
            path = GOLDEN / f"{name}.sh"
            old = path.read_text() if path.exists() else None
            path.write_text(script)
            print(f"{'unchanged' if old == script else 'wrote'} {path.relative_to(GOLDEN.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
