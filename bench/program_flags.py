#!/usr/bin/env python3
"""What reading a program's flags costs `danlu submit`, in one run, side by side (issue 14).

    python bench/program_flags.py [--lines 1500] [--flags 300] [--repeat 10]

Writes a ~1,500-line argparse program (300 flags by default, the rest ordinary code) and the same program written for
optparse (which danlu does not read: nothing is parsed), then prints the median of N runs of:

  1. reading the flags in-process, cold (no cache): launcher.spec.program_flags.parse_source;
  2. `danlu submit experiment=tiny_dpo cluster=local workdir=<dir> --dry-run` (a fresh interpreter each run)
     with the readable program and with the unreadable one: the difference is what the check adds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def program(lines: int, readable: bool, flags: int = 300) -> str:
    out = ["import argparse", "import math", "", ""]
    out.append("def parse_args():")
    out.append("    parser = argparse.ArgumentParser()" if readable else "    parser = make_parser()")
    # the flags tiny_dpo's experiment sets, then filler flags
    for name, kind, default in [
        ("output_dir", "str", "None"),
        ("max_train_steps", "int", "60"),
        ("train_batch_size", "int", "32"),
        ("learning_rate", "float", "1e-5"),
        ("beta_dpo", "float", "5000"),
        ("seed", "int", "0"),
        ("checkpointing_steps", "int", "10"),
        ("crash_at_step", "int", "-1"),
        ("crash_rank", "int", "0"),
        ("hang_at_step", "int", "-1"),
        ("hang_rank", "int", "0"),
        ("sleep_per_step", "float", "0.0"),
    ]:
        out.append(f"    parser.add_argument('--{name}', type={kind}, default={default}, help='the {name}')")
    for k in range(flags - 12):
        out.append(f"    parser.add_argument('--option_{k}', type=float, default={k}.5,")
        out.append(f"                        choices=None, help='option number {k} of this program')")
    out.append("    return parser.parse_args()")
    while len(out) < lines - 3:
        k = len(out)
        out += ["", f"def helper_{k}(x):", f"    return math.sqrt(abs(x)) + {k}"]
    out += ["", "if __name__ == '__main__':", "    parse_args()"]
    text = "\n".join(out) + "\n"
    # the same size, but optparse-style: danlu does not parse it at all
    return (
        text if readable else text.replace("import argparse", "import optparse").replace("add_argument", "add_option")
    )


def medians(a: list, b: list, repeat: int, cwd: Path) -> tuple:
    """Median wall time of each command, run in alternation (A B A B ...) so that drift hits both alike."""
    times: tuple = ([], [])
    for _ in range(repeat):
        for argv, out in ((a, times[0]), (b, times[1])):
            t = time.perf_counter()
            done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
            out.append(time.perf_counter() - t)
            assert done.returncode == 0, done.stderr
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument(
        "--flags", type=int, default=300, help="flags declared (DiffusionDPO's train.py: 51 in 1,500 lines)"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from launcher.spec.program_flags import parse_source

    with tempfile.TemporaryDirectory() as tmp:
        readable, unreadable = Path(tmp) / "readable", Path(tmp) / "unreadable"
        for d, ok in ((readable, True), (unreadable, False)):
            d.mkdir()
            (d / "train.py").write_text(program(args.lines, ok, args.flags))
        text = (readable / "train.py").read_text()
        n_lines = len(text.splitlines())
        cold = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            flags = parse_source(text, "train.py")
            cold.append(time.perf_counter() - t)
        assert flags.checkable, flags.parser
        env_home = Path(tmp) / "home"
        base = [sys.executable, "-m", "launcher.cli", "submit", "experiment=tiny_dpo", "cluster=local", "--dry-run"]
        import os

        os.environ.update(
            DANLU_HOME=str(env_home),
            DANLU_RUNS_DIR=str(Path(tmp) / "runs"),
            DANLU_STORE=str(env_home / "store.sqlite"),
            NO_COLOR="1",
        )
        with_check, without = medians(
            base + [f"workdir={readable}"], base + [f"workdir={unreadable}"], args.repeat, REPO
        )
    print(f"program: {n_lines} lines, {len(flags.flags)} argparse flags; median of {args.repeat} runs")
    print(f"{'measure':<52} {'seconds':>9}")
    print(f"{'read the flags in-process (cold, ast)':<52} {statistics.median(cold):>9.4f}")
    print(f"{'danlu submit --dry-run, flags read and checked':<52} {with_check:>9.3f}")
    print(f"{'danlu submit --dry-run, flags not readable':<52} {without:>9.3f}")
    print(
        f"{'what the check adds to submit':<52} {with_check - without:>9.3f}  "
        f"({(with_check - without) * 1000:.0f} ms; budget 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
