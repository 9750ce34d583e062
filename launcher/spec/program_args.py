"""A run's `args` held against its program's own flags (launcher/spec/program_flags.py), before the queue.

A typo (`+args.beta_dop=2500`) would otherwise wait in the queue and fail in the job's first second, and a
prefix (`args.max_train_step=3`) would be silently taken by argparse for `--max_train_steps`. Programs whose
flags cannot be read are not refused; `danlu submit --dry-run` says which was the case.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UserError
from .options import RunSpec
from .program_flags import Flag, ProgramFlags, read_flags


def program_path(workdir: Any, program: Any) -> Optional[Path]:
    return _program_path(str(workdir or "."), str(program)) if program else None


@lru_cache(maxsize=256)
def _program_path(workdir: str, program: str) -> Path:  # once per program, not per run of a sweep
    path = Path(program).expanduser()
    return path if path.is_absolute() else Path(workdir).expanduser() / path


def flags_of(spec: RunSpec) -> Optional[ProgramFlags]:
    path = program_path(spec.workdir, spec.program)
    return read_flags(path) if path is not None else None


def _values(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _bad_value(flag: Flag, value: Any) -> Optional[str]:
    """Why argparse would refuse this value (only what the source says literally: type= and choices=)."""
    if not flag.takes_value:
        if value is True:
            return None
        return f"--{flag.name} is a switch ({flag.action}): it takes no value"
    if value is True:
        if flag.nargs in ("?", "*"):
            return None
        return f"true renders a bare --{flag.name}, but it takes a value"
    if isinstance(value, dict):
        return None  # rendered as JSON: a program may well read it so
    for v in _values(value):
        text = str(v)
        if flag.type in ("int", "float"):
            try:
                int(text) if flag.type == "int" else float(text)
            except ValueError:
                return f"{text!r} is not an {flag.type}" if flag.type == "int" else f"{text!r} is not a float"
        if flag.choices is not None and v not in flag.choices and text not in [str(c) for c in flag.choices]:
            return f"{text!r} is not one of {', '.join(map(str, flag.choices))}"
    return None


_VERDICTS: Dict[Tuple[int, type, Any], Tuple[Flag, Optional[str]]] = {}


def _bad_value_of(flag: Flag, value: Any) -> Optional[str]:
    """_bad_value, once per flag and scalar value (a sweep's runs share most of their args)."""
    if type(value) not in (int, float, str, bool):
        return _bad_value(flag, value)
    key = (id(flag), type(value), value)
    known = _VERDICTS.get(key)
    if known is None or known[0] is not flag:
        known = _VERDICTS[key] = (flag, _bad_value(flag, value))
    return known[1]


def unknown_flag(flags: ProgramFlags, key: str, experiment: Optional[str]) -> UserError:
    """The error for `args.KEY` where the program declares no `--KEY`: a prefix argparse would expand, a close
    name, or where to look."""
    prog = Path(flags.path).name
    longer = flags.expansions(key)
    if len(longer) == 1:
        return UserError(
            f"args.{key}: {prog} has no --{key}; argparse would take it for --{longer[0].name}",
            f"write the full name: args.{longer[0].name}=...",
        )
    if len(longer) > 1:
        names = ", ".join(f"--{f.name}" for f in longer[:4])
        return UserError(
            f"args.{key}: {prog} has no --{key} (it begins {names})", "write the full name of the flag you mean"
        )
    close = flags.similar(key)
    hint = (
        f"did you mean --{close[0]}? (args.{close[0]}=...)"
        if close
        else f"`danlu options experiment={experiment or 'NAME'}` lists {prog}'s flags"
    )
    return UserError(f"args.{key}: {prog} has no flag --{key}", hint)


def check_args(spec: RunSpec, flags: ProgramFlags) -> List[UserError]:
    """What argparse would refuse (or silently misread) in these args, as UserErrors."""
    if not flags.checkable:
        return []
    prog = Path(flags.path).name
    problems: List[UserError] = []
    for key, value in spec.args.items():
        flag = flags.find(key)
        if flag is None:
            problems.append(unknown_flag(flags, key, spec.experiment))
            continue
        if value is None or value is False:
            continue  # left out of the command line
        why = (
            f"--{flag.name} takes one value, not a mapping"
            if isinstance(value, dict) and value
            else _bad_value_of(flag, value)
        )
        if why is not None:
            choices = (
                f"one of {', '.join(map(str, flag.choices))}"
                if flag.choices
                else (flag.type or "a value")
                if flag.takes_value
                else "true or false"
            )
            problems.append(UserError(f"args.{key}={_show(value)} for {prog}: {why}", f"set args.{key} to {choices}"))
    given = set(spec.args) | ({spec.output_arg} if spec.output_arg else set())
    for flag in flags.flags:
        if flag.required and not any(o.lstrip("-") in given for o in flag.options) and flag.dest not in given:
            problems.append(
                UserError(f"{prog} requires --{flag.name}, which args does not set", f"set args.{flag.name}=...")
            )
    return problems


def _show(value: Any) -> str:
    if value is True:
        return "true"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


LIST_STYLES = ("comma", "repeat", "spaced")
RUN_TIME_PARSERS = ("lightningcli", "jsonargparse")


def settle(spec: RunSpec) -> None:
    """What the program's own flags decide about its command line, fixed in the spec (rendering stays a pure
    function of it): how each list in args is written, and the precision the program itself is given."""
    flags = flags_of(spec)
    for key, value in spec.args.items():
        if not isinstance(value, (list, tuple)) or key in spec.arg_lists:
            continue
        flag = flags.find(key) if flags is not None and flags.parser == "argparse" else None
        lightning = spec.launch.kind == "lightning" or flags is not None and flags.parser in RUN_TIME_PARSERS
        if lightning and key == "config":
            spec.arg_lists[key] = "repeat"  # LightningCLI merges several --config files, in order
        elif flag is not None and flag.action == "append":
            spec.arg_lists[key] = "repeat"
        elif flag is not None and flag.nargs is not None and flag.nargs not in ("?", "1"):
            spec.arg_lists[key] = "spaced"  # nargs="*" / "+" / N: --base a.yaml b.yaml
    if flags is not None:
        _carry_precision(spec, flags)


def _carry_precision(spec: RunSpec, flags: ProgramFlags) -> None:
    """`launch.mixed_precision` is danlu's one precision setting. A program with its own `--mixed_precision`
    (DiffusionDPO's train.py passes it to `Accelerator(...)`, where it wins over `accelerate launch
    --mixed_precision`) gets it as that flag too; a different value set in args is refused."""
    wanted = spec.launch.mixed_precision
    if not wanted or flags.parser != "argparse" or flags.find("mixed_precision") is None:
        return
    prog = Path(flags.path).name
    own = spec.args.get("mixed_precision")
    if own is not None and own is not False and str(own) != str(wanted):
        raise UserError(
            f"launch.mixed_precision={wanted} but args.mixed_precision={own}: {prog} gives its own "
            "--mixed_precision to Accelerator, where it wins over the launcher's",
            "set launch.mixed_precision only: it reaches the launcher and the program",
        )
    spec.args["mixed_precision"] = wanted


def declares(workdir: Any, program: Any, key: str, experiment: Optional[str] = None) -> Optional[bool]:
    """Does the program declare `--KEY` (so that `args.KEY=...` needs no `+`)? None when its flags are not known;
    a UserError is raised when they are all known and `--KEY` is not one of them."""
    path = program_path(workdir, program)
    flags = read_flags(path) if path is not None else None
    if flags is None or flags.parser != "argparse":
        return None
    if flags.find(key) is not None:
        return True
    if flags.checkable:
        raise unknown_flag(flags, key, experiment)
    return False


def verdict(spec: RunSpec) -> Tuple[List[UserError], str]:
    """(problems, one line saying what was checked) for a run's args against its program."""
    path = program_path(spec.workdir, spec.program)
    flags = read_flags(path) if path is not None else None
    name = Path(str(spec.program)).name if spec.program else "the program"
    if flags is None:
        return [], f"program args not checked: {name} cannot be read here"
    if flags.parser in RUN_TIME_PARSERS:
        return config_files(
            spec
        ), f"program args not checked: {name} {flags.why_not_checked()}; its --config files exist"
    if not flags.checkable:
        return [], f"program args not checked: {name} {flags.why_not_checked()}"
    return check_args(spec, flags), f"program args checked against the {len(flags.flags)} argparse flags of {name}"


def config_files(spec: RunSpec) -> List[UserError]:
    """A LightningCLI/jsonargparse program's `--config` files (relative to the workdir) exist."""
    value = spec.args.get("config")
    if value is None or value is False:
        return []
    workdir = Path(str(spec.workdir)).expanduser()
    missing = [str(v) for v in _values(value) if not (workdir / Path(str(v)).expanduser()).is_file()]
    if not missing:
        return []
    return [
        UserError(
            f"config file {missing[0]!r} (args.config) not found in {str(workdir)!r}",
            "give the path relative to workdir; several files: args.config=[a.yaml,b.yaml]",
        )
    ]
