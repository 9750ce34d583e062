"""How the agent picks the checkpoint signal from what real processes have set up (launcher/job/dispositions.py):
read from the process table of live Python processes, no Slurm needed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from launcher.job.dispositions import HandlerWatch, catches

# each child installs handlers, says so, and waits for its stdin to tell it to put them back
_CHILD = """
import signal, sys
previous = {s: signal.signal(s, lambda *a: None) for s in (%s)}
print("ready", flush=True)
sys.stdin.readline()
for s, p in previous.items():
    signal.signal(s, p)
print("restored", flush=True)
sys.stdin.readline()
"""


def _child(*sigs: str) -> subprocess.Popen:
    code = _CHILD % "".join(f"signal.{s}, " for s in sigs)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _step(p: subprocess.Popen) -> None:
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "restored"


@pytest.mark.parametrize(
    "sigs, expected",
    [
        (("SIGUSR1", "SIGTERM"), signal.SIGUSR1),
        (("SIGTERM",), signal.SIGTERM),  # Lightning's trainer
        ((), signal.SIGTERM),
    ],
)  # no handler at all: just stop it
def test_signal_follows_the_programs_handlers_and_none_once_it_put_them_back(sigs, expected):
    p = _child(*sigs)
    try:
        watch = HandlerWatch(lambda: [p.pid], lambda: p.poll() is None, every=0.05)
        for s in sigs:
            assert catches(p.pid, getattr(signal, s))
        time.sleep(0.3)  # the watch has looked at least once
        assert watch.checkpoint_signal([p.pid]) == expected
        _step(p)
        # handlers put back: finishing if it ever had any; a program that never had any is stopped as before
        assert watch.checkpoint_signal([p.pid]) == (None if sigs else signal.SIGTERM)
        watch.close()
    finally:
        p.kill()
        p.wait()
    assert not catches(p.pid, signal.SIGUSR1)  # gone: nothing caught
