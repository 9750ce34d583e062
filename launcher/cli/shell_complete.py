"""Shell completion: `danlu completion bash|zsh` prints a script; on TAB the shell runs the hidden
`danlu __complete [--bash WORD] -- danlu WORD... CURRENT`, which prints one candidate per line.

It must answer in a few tens of milliseconds: never Hydra, never Slurm. Config names come from the
jobs/ directories (the same search path as `danlu submit`), run ids from the store, read-only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    import argparse  # imported where used: TAB must answer fast

BASH = r"""# danlu completion for bash: eval "$(danlu completion bash)" (e.g. in ~/.bashrc)
_danlu_complete() {
    local line="${COMP_LINE:0:$COMP_POINT}" words
    read -r -a words <<<"$line"
    [[ "$line" =~ [[:space:]]$ ]] && words+=("")
    local IFS=$'\n'
    COMPREPLY=($(danlu __complete --bash "${COMP_WORDS[COMP_CWORD]}" -- "${words[@]}" 2>/dev/null))
    local c
    for c in "${COMPREPLY[@]}"; do
        if [[ "$c" == *= || "$c" == */ ]]; then compopt -o nospace 2>/dev/null; break; fi
    done
}
complete -o default -F _danlu_complete danlu
"""

ZSH = r"""#compdef danlu
# danlu completion for zsh: eval "$(danlu completion zsh)" (after compinit, e.g. in ~/.zshrc)
_danlu() {
    local -a cands open closed
    cands=("${(@f)$(danlu __complete -- "${(@)words[1,CURRENT]}" 2>/dev/null)}")
    local c
    for c in $cands; do
        [[ -z "$c" ]] && continue
        if [[ "$c" == *= || "$c" == */ ]]; then open+=("$c"); else closed+=("$c"); fi
    done
    (( $#open )) && compadd -Q -S '' -- $open
    (( $#closed )) && compadd -Q -- $closed
    (( $#open + $#closed )) || _files
}
compdef _danlu danlu
"""

GROUPS = ("experiment", "cluster", "resources", "env", "launch")
STATES = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)
VALUE_OPTIONS = {
    "--state",
    "--name",
    "--config-dir",
    "--template-dir",
    "--node",
    "--rank",
    "--tail",
    "--attempt",
    "--interval",
    "--metric",
    "--mode",
    "--html",
    "--code",
    "--older-than",
}
RUN_ONLY = ("logs", "stacks", "show", "attach")  # take a run id, not a sweep
LIMIT = 300


def script(shell: str) -> str:
    return BASH if shell == "bash" else ZSH


# ---- what the parser knows (argparse only: cheap) ----------------------------------------------
def _subparsers() -> Dict[str, argparse.ArgumentParser]:
    import argparse

    from .parser import build_parser

    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public API for this
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _commands() -> List[str]:
    import argparse

    from .parser import build_parser

    for action in build_parser()._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return [c.dest for c in action._choices_actions]  # noqa: SLF001 - visible commands only
    return []


def _flags(parser: argparse.ArgumentParser) -> List[str]:
    out: List[str] = []
    for action in parser._actions:  # noqa: SLF001
        if action.help == "==SUPPRESS==":
            continue
        out.extend(o for o in action.option_strings if o.startswith("--"))
    return out


# ---- configs (files only) ----------------------------------------------------------------------
def _config_dirs(words: Sequence[str]) -> List[Path]:
    from ..spec.config_groups import search_dirs

    config_dir = None
    for i, w in enumerate(words):
        if w == "--config-dir" and i + 1 < len(words):
            config_dir = words[i + 1]
        elif w.startswith("--config-dir="):
            config_dir = w.split("=", 1)[1]
    try:
        return search_dirs(config_dir)
    except Exception:  # a --config-dir that does not exist (yet): the others still complete
        return search_dirs(None)


def _group_options(dirs: Sequence[Path], group: str) -> List[str]:
    from ..spec.config_groups import group_options

    return group_options(dirs, group)


def _load_yaml(path: Path) -> Dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def _chosen(words: Sequence[str], group: str) -> Optional[str]:
    for w in words:
        if w.startswith(f"{group}="):
            return w.split("=", 1)[1]
    return None


def _cluster_partitions(dirs: Sequence[Path], words: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    name = _chosen(words, "cluster")
    names = [name] if name else _group_options(dirs, "cluster")
    parts: Dict[str, Dict[str, Any]] = {}
    for d in dirs:
        for n in names:
            f = d / "cluster" / f"{n}.yaml"
            if f.is_file():
                for p, spec in (_load_yaml(f).get("partitions") or {}).items():
                    parts.setdefault(str(p), spec if isinstance(spec, dict) else {})
    return parts


def _experiment_args(dirs: Sequence[Path], words: Sequence[str]) -> List[str]:
    name = _chosen(words, "experiment")
    if not name:
        return []
    keys: List[str] = []
    for d in dirs:
        f = d / "experiment" / f"{name}.yaml"
        if f.is_file():
            keys.extend(str(k) for k in (_load_yaml(f).get("args") or {}) if str(k) not in keys)
    return keys


def _option_keys() -> List[str]:
    from ..spec.options import RunSpec, describe

    return [k for k, _, _ in describe(RunSpec) if k not in GROUPS and k != "args"]


def _values(key: str, dirs: Sequence[Path], words: Sequence[str]) -> List[str]:
    from ..spec import validate

    if key in GROUPS:
        return _group_options(dirs, key)
    fixed = {
        "env.kind": validate.ENV_KINDS,
        "launch.kind": validate.LAUNCH_KINDS,
        "cluster.kind": validate.CLUSTER_KINDS,
        "requeue.signal": validate.SIGNALS,
        "launch.mixed_precision": ("no", "fp16", "bf16"),
        "requeue.enabled": ("true", "false"),
        "cluster.shared_fs": ("true", "false"),
        "cluster.gres_with_type": ("true", "false"),
    }
    if key in fixed:
        return list(fixed[key])
    if key == "env.name":
        from ..envs import available

        return sorted(available())
    if key == "resources.partition":
        return sorted(_cluster_partitions(dirs, words))
    if key == "resources.gpu_type":
        return sorted({str(s.get("gpu_type")) for s in _cluster_partitions(dirs, words).values() if s.get("gpu_type")})
    return []


def _overrides(cur: str, words: Sequence[str]) -> List[str]:
    dirs = _config_dirs(words)
    lead = cur[: len(cur) - len(cur.lstrip("+~"))]  # +key=, ++key=, ~key
    body = cur[len(lead) :]
    if "=" not in body:
        keys = [f"{g}=" for g in GROUPS] + [f"{k}=" for k in _option_keys()]
        keys += [f"args.{a}=" for a in _experiment_args(dirs, words)]
        return [lead + k for k in keys]
    key, value = body.split("=", 1)
    head = value[: value.rfind(",") + 1]  # sweeps: experiment=a,b<TAB>
    return [f"{lead}{key}={head}{v}" for v in _values(key, dirs, words)]


# ---- run ids (the store, read-only) ------------------------------------------------------------
def _names(cur: str, runs_only: bool) -> List[str]:
    """Sweeps (or runs) whose name begins with `cur`; `runs_only`: a sweep is offered as `sweep/`, and the runs of
    the one sweep `cur` begins directly."""
    from ..store import Names

    with Names() as names:
        if "/" in cur or runs_only and len(names.sweeps(cur, 2)) == 1:
            return names.runs(cur, LIMIT)
        return [f"{s}/" if runs_only else s for s in names.sweeps(cur, LIMIT)]


# ---- the completer ---------------------------------------------------------------------------
def candidates(words: Sequence[str]) -> List[str]:
    """Completions of the last word of `words` (words[0] is the program, the last is being typed)."""
    words = list(words[1:]) or [""]
    cur, before = words[-1], words[:-1]
    positional = [
        w for i, w in enumerate(before) if not w.startswith("-") and not (i > 0 and before[i - 1] in VALUE_OPTIONS)
    ]
    if not positional:
        return ["--help", "--version"] if cur.startswith("-") else _commands()
    command, args = positional[0], positional[1:]
    subs = _subparsers()
    if command not in subs:
        return []
    prev = before[-1] if before else ""
    if prev in VALUE_OPTIONS:
        return _option_values(prev, cur)
    if cur.startswith("-"):
        return _command_flags(subs, command, args)
    return _arguments(command, args, cur, before)


def _option_values(option: str, cur: str) -> List[str]:
    """The values of an option that takes one: --mode's and --state's (a list: PENDING,RUN<TAB>)."""
    if option == "--mode":
        return [m for m in ("min", "max") if m.startswith(cur)]
    if option == "--code":
        return [c for c in ("own", "current") if c.startswith(cur)]
    if option == "--state":
        head = cur[: cur.rfind(",") + 1]
        return [head + s for s in STATES]
    return []


def _command_flags(subs: Dict[str, argparse.ArgumentParser], command: str, args: Sequence[str]) -> List[str]:
    """The flags of `command`, or of its subcommand (`env sync`, `cluster init`)."""
    if command in ("env", "cluster") and args:
        for action in subs[command]._actions:  # noqa: SLF001
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict) and args[0] in choices:
                return _flags(choices[args[0]])
    return _flags(subs[command]) + (["-m"] if command == "submit" else [])


def _arguments(command: str, args: Sequence[str], cur: str, before: Sequence[str]) -> List[str]:
    """The positional arguments of `command` after `args`: overrides, sweep and run ids, subcommands."""
    if command in ("submit", "debug"):
        return _overrides(cur, before)
    if command == "rerun":
        return _names(cur, runs_only=False) if not args else _overrides(cur, before)
    if command in ("report", "notify"):
        return _names(cur, runs_only=False) if not args else []
    if command in ("status", "cancel"):
        return _names(cur, runs_only=False)
    if command in RUN_ONLY:
        return _names(cur, runs_only=True) if not args else []
    if command == "diff":  # two run ids
        return _names(cur, runs_only=True) if len(args) < 2 else []
    if command == "env":
        return _env_arguments(args)
    if command == "cluster":
        return ["init"] if not args else []
    if command == "completion":
        return ["bash", "zsh"] if not args else []
    return []


def _env_arguments(args: Sequence[str]) -> List[str]:
    if not args:
        return ["sync", "list"]
    if args[0] == "sync" and len(args) == 1:
        from ..envs import available

        return sorted(available())
    return []


def complete(argv: Sequence[str]) -> int:
    """`danlu __complete [--bash WORD] -- WORDS...`: candidates for the last word, one per line."""
    argv = list(argv)
    bash_word = None
    if argv[:1] == ["--bash"] and len(argv) >= 2:
        bash_word, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        cur = argv[-1] if len(argv) > 1 else ""
        out = [c for c in dict.fromkeys(candidates(argv)) if c.startswith(cur)]
    except Exception:  # completion never prints a traceback into the user's prompt
        return 0
    if bash_word is not None and cur.endswith(bash_word):
        # bash splits words at '=' and ':' (COMP_WORDBREAKS): reply with the part after the split
        cut = len(cur) - len(bash_word)
        out = [c[cut:] for c in out]
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0
