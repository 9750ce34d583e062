"""`danlu status --watch` on the test cluster: live on a real terminal (tmux), plain when piped,
no colors under NO_COLOR, and one sacct + one squeue per refresh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu, danlu_env, submit_json  # noqa: F401

VENV_BIN = str(Path(sys.executable).parent)
COLOR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;5;\d+|38;2;[\d;]+)m")  # a foreground color


def tmux_watch(name: str, env: dict, args: list[str], timeout: float = 240) -> tuple[list[str], str]:
    """Run `danlu status --watch ARGS` in a tmux terminal until it exits; (distinct screens, last screen)."""
    full = dict(os.environ, **env, TERM="xterm-256color")
    full["PATH"] = f"{VENV_BIN}:{full['PATH']}"
    sockdir = tempfile.mkdtemp(prefix="danlu-tmux-")
    tmux = ["tmux", "-S", f"{sockdir}/s"]  # a private server: it starts with this environment
    cmd = "danlu status --watch " + " ".join(args) + "; echo EXIT=$?; sleep 120"
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "150", "-y", "30", "bash", "-c", cmd],
        env=full,
        check=True,
        cwd=REPO,
    )
    screens: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-e", "-t", name], capture_output=True, text=True
            ).stdout
            if not screens or screens[-1] != screen:
                screens.append(screen)
            if "EXIT=" in screen:
                return screens, screen
            time.sleep(0.5)
        raise AssertionError(f"watch did not end:\n{screens[-1] if screens else ''}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(sockdir, ignore_errors=True)


def plain(screen: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)


@pytest.mark.slurm
@pytest.mark.timeout(400)
def test_watch_live_plain_and_no_color(slurm_cluster, danlu_env, tmp_path):
    # runs of 8 s: the watch refreshes while they run
    out = submit_json(
        "-m",
        "cluster=testcluster",
        "launch=python",
        f"workdir={REPO / 'tests' / 'programs'}",
        "program=print_argv.py",
        "+args.x=1,2,3",
        "+env.vars.PRINT_ARGV_SLEEP=8",
        "--name",
        "watched",
        env=danlu_env,
    )
    assert len(out["runs"]) == 3
    trace = tmp_path / "trace"
    screens, last = tmux_watch(
        "live", dict(danlu_env, DANLU_TRACE_SLURM=str(trace), NO_COLOR=""), ["--interval", "1", "watched"]
    )
    text = plain(last)
    assert "EXIT=0" in text, text  # watching named runs ends by itself once they have all ended
    assert text.startswith("danlu status --watch: watched · every 1 s"), text
    bar = next(line for line in text.splitlines() if line.startswith("watched "))
    assert "█" * 24 in bar and "3/3" in bar and "3 CD" in bar, bar
    assert [line.split()[0] for line in text.splitlines() if line.startswith("watched/")] == [
        "watched/0",
        "watched/1",
        "watched/2",
    ]
    assert COLOR.search(last), "no colors on a terminal without NO_COLOR"
    calls = trace.read_text().split()
    refreshes = calls.count("sacct")
    # one sacct + one squeue per refresh, and it did refresh while the runs were going
    assert refreshes >= 2 and calls.count("squeue") == refreshes and len(calls) == 2 * refreshes, calls
    assert any(re.search(r"watched/\d .* (PD|R|CF) ", plain(s)) for s in screens), "never saw a run before it ended"
    print(f"watch: {refreshes} refreshes, {len(screens)} distinct screens")

    # NO_COLOR on a terminal: the same live table, no colors
    _, last = tmux_watch("nocolor", dict(danlu_env, NO_COLOR="1"), ["watched"])
    assert "3/3" in plain(last) and "EXIT=0" in plain(last)
    assert not COLOR.search(last), repr(last[:500])

    # not a terminal: plain blocks, no escape codes at all
    done = danlu("status", "--watch", "watched", env=dict(danlu_env, NO_COLOR=""), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("danlu status --watch: watched")
    assert lines[1] == "watched  [" + "#" * 24 + "] 3/3  3 CD", lines[1]
    assert lines[2].split()[0] == "RUN" and [ln.split()[0] for ln in lines[3:6]] == [f"watched/{i}" for i in range(3)]

    # a name that does not exist: bad input before the screen is taken over
    done = danlu("status", "--watch", "nope-0000", env=danlu_env)
    assert done.returncode == 2 and done.stderr.startswith("error: ")


def test_the_progress_bar_counts_a_run_slurm_may_requeue_as_still_to_go():
    """PREEMPTED while Slurm holds the job (not final, issue 15) is not an ended run: no 'x' for it in the bar."""
    from launcher.views.watch import bar_text, sweep_progress

    items = [
        {"sweep": "s", "state": "COMPLETED", "final": True},
        {"sweep": "s", "state": "PREEMPTED", "final": False},
        {"sweep": "s", "state": "FAILED", "final": True},
        {"sweep": "s", "state": "RUNNING", "final": False},
        {"sweep": "other", "state": "FAILED", "final": True},
    ]
    [(sweep, counts, total, completed, bad)] = sweep_progress(items, ["s"])
    assert (sweep, total, completed, bad) == ("s", 4, 1, 1)
    assert counts == {"COMPLETED": 1, "PREEMPTED": 1, "FAILED": 1, "RUNNING": 1}
    assert bar_text(total, completed, bad, width=8, ascii_only=True) == "##xx----"
    items[1]["final"] = True  # Slurm let it go: now it has ended
    assert sweep_progress(items, ["s"])[0][4] == 2
