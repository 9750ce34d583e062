"""Shared pytest fixtures.

Add your own fixtures below the "test Slurm cluster" block; keep that block generic.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# Test Slurm cluster (tests/cluster/up.sh): a REAL Slurm on this machine, never a mock.
# Mark tests that need it with @pytest.mark.slurm and request the `slurm_cluster` fixture.
# The cluster is started once per session and left running (other sessions reuse it);
# stop it by hand with tests/cluster/down.sh.
# ---------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = REPO_ROOT / "tests" / "cluster"
UP_TIMEOUT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: needs the project's test Slurm cluster (tests/cluster/up.sh)")


# The longest test files first, longest first (one worker's seconds in a full run: tests/run.sh prints them):
# with `--dist loadfile --no-loadscope-reorder` the workers take them first and end together, instead of one worker
# starting a three-minute file when the others are nearly done. Files not named keep their order, after these.
LONGEST_FIRST = (
    "test_examples.py",
    "test_bad_input.py",
    "test_signals.py",
    "test_launch.py",
    "test_status.py",
    "test_resilience.py",
    "test_sweeps.py",
    "test_requeue.py",
    "test_completion.py",
    "test_envs.py",
    "test_continue.py",
    "test_program_flags.py",
    "test_world.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # a test that reaches the cluster through a fixture is a Slurm test, marked or not
        if "slurm_cluster" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slurm)
    if not getattr(config.option, "numprocesses", None):
        return  # one process (the disruptive tests): the order of the files
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


# DANLU_TEST_SLURM=24.11 or 26.05: the tests (and the danlu they run) talk to that version's test cluster
# (tests/cluster/chroot.sh): the same code, only the Slurm client commands come from elsewhere
TEST_SLURM = os.environ.get("DANLU_TEST_SLURM", "22.05")
if TEST_SLURM != "22.05":
    os.environ["PATH"] = f"/var/tmp/danlu-slurm-{TEST_SLURM}/bin:{os.environ.get('PATH', '')}"


def cluster_root(version: str = TEST_SLURM) -> Path:
    """Where the cluster's files are, seen from here: / for 22.05, the root of a newer version's cluster."""
    return Path("/") if version == "22.05" else Path(f"/var/tmp/danlu-slurm-{version}/root")


@dataclass(frozen=True)
class SlurmCluster:
    """What tests may want to know about the running test cluster."""

    state_dir: Path
    log_dir: Path
    cluster_dir: Path  # tests/cluster: up.sh, down.sh, node.sh
    version: str = TEST_SLURM
    name: str = "testcluster"
    default_partition: str = "debug-4090-01"
    partitions: dict[str, list[str]] = field(
        default_factory=lambda: {
            "debug-4090-01": ["node1", "node2"],  # 32 CPUs, 64000 MB, 4x gpu:rtx4090 each
            "debug-A10-01": ["node3"],  # 64 CPUs, 128000 MB, 8x gpu:a10
            "urgent-4090": ["node1", "node2"],  # higher PriorityTier: preempts debug-4090-01
        }
    )
    up_output: str = ""

    def script(self, name: str, *args: str) -> list[str]:
        """argv of one of tests/cluster's scripts for this cluster (inside its root for a newer version)."""
        argv = ["bash", str(self.cluster_dir / name), *args]
        return (
            argv
            if self.version == "22.05"
            else ["bash", str(self.cluster_dir / "chroot.sh"), "run", self.version, *argv]
        )

    def node(self, action: str, node: str) -> None:
        """Stop/kill/start one node's slurmd: action in stop|kill|start|status."""
        subprocess.run(self.script("node.sh", action, node), check=True)

    def log(self, name: str) -> Path:
        """Path of a daemon log, e.g. log('slurmctld') or log('slurmd-node1')."""
        return self.log_dir / f"{name}.log"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """Start (or reuse) the test Slurm cluster; skip (fail on CI=true) if it cannot start."""
    inside = os.environ.get("DANLU_TESTCLUSTER_DIR", "/var/tmp/danlu-testcluster")
    state_dir = cluster_root() / inside.lstrip("/")
    reason = None
    output = ""
    try:
        proc = subprocess.run(
            ["bash", str(CLUSTER_DIR / "up.sh"), TEST_SLURM],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            reason = f"tests/cluster/up.sh exited {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""  # may be bytes even with text=True
        output = out.decode(errors="replace") if isinstance(out, bytes) else out
        reason = f"tests/cluster/up.sh did not finish within {UP_TIMEOUT_S} s"
    except OSError as exc:
        reason = f"cannot run tests/cluster/up.sh: {exc}"
    if reason is not None:
        msg = f"TEST SLURM CLUSTER UNAVAILABLE: {reason}\n{_tail(output)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return SlurmCluster(
        state_dir=state_dir,
        log_dir=state_dir / "log",
        cluster_dir=CLUSTER_DIR,
        up_output=output,
    )


# ---------------------------------------------------------------------------------------------
# Other fixtures go below.
# ---------------------------------------------------------------------------------------------


# ---- the bad-input catalogue (tests/test_bad_input.py) counts the cases that really ran ----------------
_CATALOGUE = "test_bad_input.py::test_bad_submit["
_catalogue_seen: dict = {"ran": set(), "passed": set()}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _CATALOGUE in report.nodeid and report.when == "call":
        _catalogue_seen["ran"].add(report.nodeid)
        if report.passed:
            _catalogue_seen["passed"].add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """When the catalogue ran whole (no -k, no single test named), every case must have run and passed, and
    there must be at least CATALOGUE_FLOOR of them: a skipped or dropped case fails the session."""
    ran, passed = _catalogue_seen["ran"], _catalogue_seen["passed"]
    config = session.config
    if hasattr(config, "workerinput") or not ran or config.option.keyword or any("::" in a for a in config.args):
        return
    from test_bad_input import CATALOGUE_FLOOR, SUBMIT_CASES

    expected = len(SUBMIT_CASES)
    problem = ""
    if expected < CATALOGUE_FLOOR:
        problem = f"the catalogue has {expected} submit cases, fewer than its floor of {CATALOGUE_FLOOR}"
    elif len(ran) != expected or len(passed) != expected:
        problem = f"{len(ran)} of {expected} catalogue cases ran and {len(passed)} passed"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(
            f"bad-input catalogue: {len(ran)} submit cases ran, {len(passed)} passed"
            + (f" -- FAILED: {problem}" if problem else "")
        )
    if problem:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
