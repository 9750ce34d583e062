"""The tests' own helpers that decide which processes a test may signal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import TEST_SLURM
from slurm_helpers import node_processes

SLEEPER = (
    "import os, sys, time\nif sys.argv[1] != '/': os.chroot(sys.argv[1])\nprint('ready', flush=True)\ntime.sleep(60)"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root (the tests run as root)")
@pytest.mark.skipif(TEST_SLURM != "22.05", reason="the 22.05 cluster runs in this root; the newer ones elsewhere")
def test_node_processes_never_takes_another_clusters_job_with_the_same_id(tmp_path):
    """The three versions' test clusters share this host and number their jobs alike: a process of job N on
    node2 of another cluster (another root directory) is not one of this cluster's job N."""
    env = {**os.environ, "SLURMD_NODENAME": "node2", "SLURM_JOB_ID": "987654321"}
    procs = [
        subprocess.Popen([sys.executable, "-c", SLEEPER, root], env=env, stdout=subprocess.PIPE, text=True)
        for root in ("/", str(tmp_path))
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        ours, theirs = (p.pid for p in procs)
        found = node_processes("node2", ["987654321"])
        assert ours in found
        assert theirs not in found
    finally:
        for p in procs:
            p.kill()
            p.wait()
