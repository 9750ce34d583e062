"""How Hydra's and OmegaConf's errors are said: one line naming the key, and a hint."""

from __future__ import annotations

from ..errors import UserError

GROUPS_HINT = "Hydra override syntax: key=value, group=option, +new.key=value, ~key; sweep with -m key=a,b"


def default_cluster_hint(name: str = "NAME") -> str:
    """How to make a cluster the default, as one line: the file and its exact lines."""
    return (
        "make it your default with jobs/local/default.yaml (or ~/.config/danlu/jobs/local/default.yaml) whose "
        f"lines are `# @package _global_` (the first line), `defaults:` and, indented, `- override /cluster: {name}`"
    )


def one_line(text: object) -> str:
    first = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return first[0] if first else str(text)


def config_error(e: Exception) -> UserError:
    """An OmegaConf error (unknown key, bad value, unresolvable interpolation) as the user's error."""
    from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, ValidationError

    key = getattr(e, "full_key", None) or ""
    msg = getattr(e, "msg", None) or one_line(e)
    if isinstance(e, ConfigKeyError):
        return UserError(
            f"unknown key {key!r}: {one_line(msg)}",
            "`danlu options` lists every known key; add new program args with +args.NAME=...",
        )
    if isinstance(e, ValidationError):
        return UserError(f"bad value for {key!r}: {one_line(msg)}", "`danlu options` shows each key's type and default")
    if isinstance(e, InterpolationResolutionError):
        return UserError(f"cannot resolve {key!r}: {one_line(msg)}", "set the environment variable or override the key")
    return UserError(f"bad config at {key!r}: {one_line(msg)}", GROUPS_HINT)
