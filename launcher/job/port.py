"""The rendezvous port of a job: a port that is free on the head node when the job starts.

A port derived from the job id alone collides whenever two jobs on one node map to the same number
(and everyone's default 29500 collides always). The batch script, which runs on the head node, asks
this module once (`python -m launcher.job.port`) and hands the port to every node in $DANLU_PORT; a
local run's agent asks it directly. Candidates are drawn at random from a range below the kernel's
ephemeral ports and each is tried with a real bind, so a port another job's launcher holds is skipped.
"""

from __future__ import annotations

import os
import random
import socket
import sys

LOW, HIGH = 15000, 32000  # below Linux's ephemeral range (32768-60999): outgoing connections never take these


def is_free(port: int) -> bool:
    """Can a listener bind `port` on every address (IPv4 and, where there is one, IPv6) right now?"""
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no such address family here
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick(low: int = LOW, high: int = HIGH, tries: int = 200) -> int:
    """A free port in [low, high); after `tries` busy candidates, one the kernel picks."""
    rng = random.SystemRandom()
    for _ in range(tries):
        port = rng.randrange(low, high)
        if is_free(port):
            return port
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def job_port() -> int:
    """$DANLU_PORT when the job has one (launch.port, or the batch script's pick), else a fresh pick."""
    given = os.environ.get("DANLU_PORT", "")
    return int(given) if given.isdigit() else pick()


if __name__ == "__main__":
    print(pick())
    sys.exit(0)
