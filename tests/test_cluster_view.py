"""`danlu cluster`: parsers on text captured from the real test cluster (tests/captured/cluster_*,
re-captured by tests/captured/cluster_capture.sh), and the command itself on the live test cluster."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from danlu_helpers import danlu
from launcher.views import cluster as clusterview
from launcher.views.cluster import node_unavailable, parse_gres, parse_sinfo, parse_squeue, split_top, summarize

CAPTURED = Path(__file__).parent / "captured"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def by_name(views):
    return {v.partition: v for v in views}


# ---- parsing (captured text) ------------------------------------------------------------------
def test_parse_sinfo_busy():
    rows = parse_sinfo(captured("cluster_sinfo_busy.txt"))
    assert sorted({(r.node, r.partition) for r in rows}) == [
        ("node1", "debug-4090-01"), ("node1", "urgent-4090"), ("node2", "debug-4090-01"), ("node2", "urgent-4090"),
        ("node3", "debug-A10-01")]
    assert {r.partition for r in rows if r.default} == {"debug-4090-01"}
    node1 = next(r for r in rows if r.node == "node1")
    assert node1.gres == {"rtx4090": 4} and node1.used == {"rtx4090": 2}  # gpu:rtx4090:2(IDX:0-1)
    node2 = next(r for r in rows if r.node == "node2")
    assert node2.used == {"rtx4090": 0}  # gpu:rtx4090:0(IDX:N/A)
    assert not any(r.unavailable for r in rows)


def test_parse_squeue_busy():
    rows = parse_squeue(captured("cluster_squeue_busy.txt"))
    jobs = dict(line.split("#")[0].strip().split("=") for line in captured("cluster_jobs.txt").splitlines()
                if "=" in line and not line.startswith("#"))
    by_id = {r.job_id: r for r in rows}
    assert by_id[jobs["two"]].gpus == 2 and by_id[jobs["two"]].state == "RUNNING"
    assert by_id[jobs["a10"]].gpus == 3 and by_id[jobs["a10"]].partitions == ["debug-A10-01"]
    assert by_id[jobs["held"]].state == "PENDING"
    assert [r.job_id for r in rows if r.job_id.startswith(jobs["array"] + "_")] == [f"{jobs['array']}_{i}" for i in range(3)]
    assert by_id[jobs["both"]].partitions == ["debug-4090-01", "debug-A10-01"]
    assert by_id[jobs["both"]].gpus == 1  # untyped --gres=gpu:1: gres/gpu=1 only


def test_summary_busy():
    views, totals = summarize(parse_sinfo(captured("cluster_sinfo_busy.txt")),
                              parse_squeue(captured("cluster_squeue_busy.txt")), user="root")
    assert [v.partition for v in views][0] == "debug-4090-01"  # the default partition first
    v = by_name(views)
    d = v["debug-4090-01"]
    assert (d.gpu_types, d.gpus_total, d.gpus_allocated, d.gpus_free, d.gpus_unavailable) == (["rtx4090"], 8, 2, 6, 0)
    assert (d.nodes, d.pending_jobs, d.running_jobs, d.my_gpus, d.my_jobs) == (2, 4, 1, 2, 1)
    a = v["debug-A10-01"]
    assert (a.gpu_types, a.gpus_total, a.gpus_allocated, a.gpus_free, a.gpus_unavailable) == (["a10"], 8, 3, 5, 0)
    assert (a.pending_jobs, a.my_gpus) == (4, 3)  # 3 array tasks + the job pending in two partitions
    u = v["urgent-4090"]  # same nodes as debug-4090-01, no jobs of its own
    assert (u.gpus_total, u.gpus_allocated, u.gpus_free, u.pending_jobs, u.my_gpus) == (8, 2, 6, 0, 0)
    # cluster-wide totals count each node once (node1/node2 are in two partitions)
    assert totals == {"a10": {"total": 8, "allocated": 3, "free": 5, "unavailable": 0},
                      "rtx4090": {"total": 8, "allocated": 2, "free": 6, "unavailable": 0}}
    # another user holds nothing
    views2, _ = summarize(parse_sinfo(captured("cluster_sinfo_busy.txt")),
                          parse_squeue(captured("cluster_squeue_busy.txt")), user="alice")
    assert all(x.my_gpus == 0 for x in views2)


def test_summary_drained_node():
    rows = parse_sinfo(captured("cluster_sinfo_drained.txt"))
    node3 = next(r for r in rows if r.node == "node3")
    assert node3.state == "draining" and node3.unavailable
    views, totals = summarize(rows, parse_squeue(captured("cluster_squeue_busy.txt")), user="root")
    a = by_name(views)["debug-A10-01"]
    # the running job keeps its 3 GPUs; the other 5 are on a draining node: not free
    assert (a.gpus_total, a.gpus_allocated, a.gpus_free, a.gpus_unavailable, a.nodes_unavailable) == (8, 3, 0, 5, 1)
    assert totals["a10"] == {"total": 8, "allocated": 3, "free": 0, "unavailable": 5}


def test_render_plain_captured():
    nodes, queue = parse_sinfo(captured("cluster_sinfo_drained.txt")), parse_squeue(captured("cluster_squeue_busy.txt"))
    views, totals = summarize(nodes, queue, user="root")
    from dataclasses import asdict

    text = clusterview.render_plain({"user": "root", "partitions": [asdict(x) for x in views], "gpu_types": totals})
    lines = text.splitlines()
    assert lines[0].split() == ["PARTITION", "GPU", "TOTAL", "ALLOC", "FREE", "DOWN", "NODES", "PENDING", "MINE"]
    assert lines[1].split() == ["debug-4090-01*", "rtx4090", "8", "2", "6", "0", "2", "4", "2"]
    assert lines[2].split() == ["debug-A10-01", "a10", "8", "3", "0", "5", "1", "(1", "down)", "4", "3"]
    assert lines[-1] == "GPUs: 8 a10 (0 free), 8 rtx4090 (6 free)"
    assert "\x1b[" not in text


def test_gres_fields():
    # the forms of the captured text ...
    assert parse_gres("gpu:rtx4090:4") == {"rtx4090": 4}
    assert parse_gres("gpu:a10:3(IDX:0-2)") == {"a10": 3}
    assert parse_gres("gpu:a10:0(IDX:N/A)") == {"a10": 0}
    # ... and forms documented by Slurm that the test cluster does not produce
    assert parse_gres("(null)") == {}
    assert parse_gres("gpu:4(S:0-1)") == {"": 4}
    assert parse_gres("gpu:a100:2(S:0),gpu:v100:1(S:1),mps:200") == {"a100": 2, "v100": 1}
    assert parse_gres("gpu:a100:3(IDX:0-1,3)") == {"a100": 3}
    assert split_top("gpu:a:3(IDX:0-1,3),mps:100") == ["gpu:a:3(IDX:0-1,3)", "mps:100"]
    assert [node_unavailable(s) for s in ("idle", "mixed", "allocated", "idle~", "down*", "drained", "draining",
                                          "idle*", "mixed+drain", "inval")] == [False] * 4 + [True] * 6


# ---- the command on the test cluster ---------------------------------------------------------
def cluster_json(env=None, trace: Path | None = None) -> dict:
    extra = dict(env or {})
    if trace is not None:
        extra["DANLU_TRACE_SLURM"] = str(trace)
    done = danlu("cluster", "--json", env=extra, check=True, timeout=60)
    return json.loads(done.stdout)


def running_on(nodes=("node1", "node2")) -> set:
    """Ids of jobs running (or completing) on these nodes, whatever their partition."""
    out = subprocess.run(["squeue", "-h", "-t", "R,CG,CF", "-w", ",".join(nodes), "-o", "%i"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return set(out.split())


def hold_two_gpus() -> str:
    """A job holding 2 rtx4090 GPUs on node1 for a few minutes (cancelled by the test)."""
    out = subprocess.run(["sbatch", "--parsable", "-p", "debug-4090-01", "-w", "node1", "--gres=gpu:rtx4090:2",
                          "--time=5", "-o", "/dev/null", "-J", "danlu-cluster-view", "--wrap", "sleep 240"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split(";")[0]


def part(data: dict, name: str) -> dict:
    return next(p for p in data["partitions"] if p["partition"] == name)


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_cluster_on_test_cluster(slurm_cluster, tmp_path):
    trace = tmp_path / "trace"
    t0 = time.monotonic()
    data = cluster_json(trace=trace)
    wall = time.monotonic() - t0
    print(f"danlu cluster --json: {wall:.2f} s wall (a fresh interpreter)")
    assert sorted(trace.read_text().split()) == ["sinfo", "squeue"]  # one of each, nothing allocated
    assert data["gpu_types"]["rtx4090"]["total"] == 8 and data["gpu_types"]["a10"]["total"] == 8
    assert (part(data, "debug-4090-01")["gpus_total"], part(data, "debug-4090-01")["gpu_types"]) == (8, ["rtx4090"])
    assert (part(data, "debug-A10-01")["gpus_total"], part(data, "debug-A10-01")["gpu_types"]) == (8, ["a10"])
    assert part(data, "debug-4090-01")["default"] and part(data, "urgent-4090")["gpus_total"] == 8
    for p in data["partitions"]:
        assert p["gpus_allocated"] + p["gpus_free"] + p["gpus_unavailable"] == p["gpus_total"]

    # plain text when not a terminal (and under NO_COLOR)
    plain = danlu("cluster", env={"NO_COLOR": "1"}, check=True, timeout=60).stdout
    assert plain.splitlines()[0].split()[:5] == ["PARTITION", "GPU", "TOTAL", "ALLOC", "FREE"]
    assert "\x1b[" not in plain and "GPUs: 8 a10" in plain

    # a job holding 2 rtx4090 GPUs on node1; other sessions use the cluster at the same time, so
    # readings count only in a window where no other job starts or ends on node1/node2
    job = hold_two_gpus()
    try:
        deadline = time.monotonic() + 150
        while job not in running_on():
            assert time.monotonic() < deadline, f"job {job} did not start: {subprocess.getoutput('squeue')}"
            time.sleep(2)
        # 1) the check, once the partition is otherwise idle (bounded wait)
        exact = None
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            before = running_on()
            reading = cluster_json()
            after = running_on()
            d, u = part(reading, "debug-4090-01"), part(reading, "urgent-4090")
            # idle apart from this job, by the test's own squeue calls and by the reading's own, all nodes up
            if before == after == {job} and (d["running_jobs"], u["running_jobs"], d["nodes_unavailable"]) == (1, 0, 0):
                exact = reading
                break
            time.sleep(3)
        if exact is not None:
            d = part(exact, "debug-4090-01")
            assert (d["gpus_total"], d["gpus_allocated"], d["gpus_free"]) == (8, 2, 6), (
                d, subprocess.getoutput("sinfo -N -O NodeList,StateLong,GresUsed; squeue"))
            assert d["my_gpus"] == 2 and part(exact, "urgent-4090")["gpus_free"] == 6
            print("debug-4090-01 otherwise idle: 8 total, 2 allocated, 6 free")
            return
        # 2) never otherwise idle: the job's own contribution, between readings with it running and
        #    just after it ended, while the other jobs on those nodes stay the same
        for _ in range(10):
            others = running_on() - {job}
            with_job = cluster_json()
            if running_on() - {job} != others:
                continue
            subprocess.run(["scancel", job], check=True)
            while job in running_on():
                time.sleep(0.5)
            without = cluster_json()
            if running_on() == others:
                a, b = part(with_job, "debug-4090-01"), part(without, "debug-4090-01")
                assert a["gpus_allocated"] == b["gpus_allocated"] + 2, (a, b)
                assert a["gpus_free"] + 2 == b["gpus_free"] and a["gpus_total"] == b["gpus_total"] == 8, (a, b)
                print(f"debug-4090-01 busy with other jobs: the job's 2 GPUs seen ({a} vs {b})")
                return
            # something else changed meanwhile: start over with a new job
            job = hold_two_gpus()
            deadline = time.monotonic() + 60
            while job not in running_on() and time.monotonic() < deadline:
                time.sleep(1)
        pytest.fail("no window without other jobs starting or ending on node1/node2 to compare readings in")
    finally:
        subprocess.run(["scancel", job], capture_output=True)


def test_cluster_without_slurm(tmp_path):
    env = {"PATH": str(tmp_path)}  # no sinfo here (danlu() puts only the venv first)
    done = danlu("cluster", env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: no Slurm here") and lines[1].startswith("hint: ")
    assert done.stdout == ""
