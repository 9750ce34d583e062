"""Where runs run, chosen once: a backend from a run's spec or its record, never from the shape of its job id."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from launcher.backends import IN_SLURM, LocalBackend, SlurmBackend, batch_output, by_backend, for_kind, for_record
from launcher.backends.slurm_backend import scancel_ids
from launcher.layout import RunLayout


def record(kind: str, job_id: str, run: str = "s/0", array: str = "") -> dict:
    return {"cluster_kind": kind, "job_id": job_id, "run": run, "run_dir": "/runs/s/0", "array_job_id": array}


def test_a_backend_is_chosen_by_the_recorded_kind_not_by_the_job_id():
    # a Slurm run whose job id looks like a local one is still Slurm's, and the other way round
    assert isinstance(for_record(record("slurm", "local-host-12")), SlurmBackend)
    assert isinstance(for_record(record("local", "12345")), LocalBackend)
    assert IN_SLURM == ("slurm",)
    with pytest.raises(ValueError, match="unknown cluster kind 'ssh'"):
        for_kind("ssh")


def test_records_are_grouped_by_backend_in_order():
    rows = [record("local", "local-h-1"), record("slurm", "7"), record("local", "local-h-2")]
    groups = by_backend(rows)
    assert [(b.kind, [r["job_id"] for r in members]) for b, members in groups] == [
        ("local", ["local-h-1", "local-h-2"]),
        ("slurm", ["7"]),
    ]


def test_only_slurm_writes_the_batch_scripts_output():
    sweep = RunLayout(Path("/runs/s/0")).sweep
    assert batch_output(record("slurm", "123_4")) == sweep.slurm_output("123_4")
    assert batch_output(record("slurm", "123_4"), "99") == sweep.slurm_output("99") == sweep.slurm_dir / "job-99.out"
    assert batch_output(record("local", "local-h-1")) is None
    assert batch_output(record("slurm", "")) is None


def test_a_local_run_of_another_host_is_judged_there():
    local = LocalBackend()
    here = socket.gethostname()
    assert local.judged_elsewhere(f"local-{here}-123") is None
    assert local.judged_elsewhere("local-elsewhere.cluster-123") == "host elsewhere.cluster"
    assert local.judged_elsewhere("local-77") is None  # an id naming no host is judged here
    assert SlurmBackend().judged_elsewhere("123") is None


def test_a_whole_array_is_cancelled_by_its_array_id():
    rows = [record("slurm", f"50_{i}", array="50") for i in range(3)] + [record("slurm", "60_0", array="60")]
    rows.append(record("slurm", "70"))
    sizes = {"50": 3, "60": 2}
    assert scancel_ids(rows, sizes.__getitem__) == ["50", "60_0", "70"]
