"""Who owns an output dir. A run's checkpoints live in its output dir, kept across its attempts so that a restart
resumes; a new run pointed at another run's output dir (args.output_dir=...) would resume from, and overwrite,
that run's checkpoints without a word. It is refused unless asked for; training a finished run further is
`danlu rerun RUN --continue`, a new attempt of that run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import UserError


def explicit_output(spec: Any) -> Optional[str]:
    """The output dir a run's args name, if they name one (else danlu gives it its own)."""
    if not spec.output_arg:
        return None
    value = spec.args.get(spec.output_arg)
    if value is None or value is False:
        return None
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = Path(os.path.expanduser(str(spec.workdir))) / path
    return os.path.normpath(str(path))


def output_problems(specs: Sequence[Any], store_path: Path) -> List[UserError]:
    """Runs of this request that share an output dir, or take one that a run in the store owns."""
    problems: List[UserError] = []
    first: Dict[str, int] = {}
    for k, spec in enumerate(specs):
        out = explicit_output(spec)
        if out is None:
            continue
        if out in first:
            problems.append(
                UserError(
                    f"runs {first[out]} and {k} of this sweep would write one output dir ({out})",
                    f"leave args.{spec.output_arg} unset (each run gets its own) or sweep it too",
                )
            )
            break
        first[out] = k
    if problems or not first or not store_path.exists():
        return problems
    from ..store import Store

    store = Store(store_path)
    try:
        for out in first:
            owner = store.output_owner(out)
            if owner:
                problems.append(
                    UserError(
                        f"output dir {out} belongs to run {owner}: this run would resume from its checkpoints and "
                        f"overwrite them",
                        f"to train {owner} further: danlu rerun {owner} --continue OVERRIDES; "
                        f"to share it anyway: --reuse-output",
                    )
                )
                break
    finally:
        store.close()
    return problems
