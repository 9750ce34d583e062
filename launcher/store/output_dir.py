"""A run's output dir as the store records it (the `output_dir` column): a real path, so that two names of one
folder find the same run."""

from __future__ import annotations

import json
import os
from typing import Any, Dict


def real_output_dir(value: str, workdir: str) -> str:
    """The output dir a run's args name, as the file system has it: ~ expanded, a relative path taken from the run's
    workdir, every symlink resolved. A path that does not exist yet is resolved as far as it exists."""
    return os.path.realpath(os.path.join(os.path.expanduser(workdir), os.path.expanduser(value)))


def output_dir_of(config: Dict[str, Any], workdir: str, run_dir: str) -> str:
    """A run's output dir as the store records it: the real path of the one its config names, else danlu's own.
    Danlu's own needs no file system call: the run dir is below the resolved runs dir."""
    output_arg = config.get("output_arg")
    args = config.get("args")
    value = args.get(output_arg) if output_arg and isinstance(args, dict) else None
    if value is None or value is False:
        return run_dir + "/output"
    return real_output_dir(str(value), workdir)


def stored_output_dir(config: str, workdir: str, run_dir: str) -> str:
    """output_dir_of a stored row (migration 5); a config it cannot read gets danlu's own."""
    try:
        loaded = json.loads(config)
        return output_dir_of(loaded if isinstance(loaded, dict) else {}, workdir or ".", run_dir)
    except (ValueError, TypeError, OSError):
        return run_dir + "/output"
