"""`danlu cluster`: parsers on text captured from the real test clusters (tests/captured/<version>/cluster_*,
re-captured by tests/captured/cluster_capture.sh), and the command itself on the live test cluster."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env  # noqa: F401 (a fixture)

from launcher.views import cluster as clusterview
from launcher.views.cluster import node_unavailable, parse_gres, parse_sinfo, parse_squeue, split_top, summarize

CAPTURED = Path(__file__).parent / "captured"
VERSIONS = ["22.05", "24.11", "26.05"]  # tests/captured/<version>/, from the test cluster of each
every_version = pytest.mark.parametrize("version", VERSIONS)


def captured(name: str, version: str = "22.05") -> str:
    return (CAPTURED / version / name).read_text()


def by_name(views):
    return {v.partition: v for v in views}


# ---- parsing (captured text) ------------------------------------------------------------------
@every_version
def test_parse_sinfo_busy(version):
    rows = parse_sinfo(captured("cluster_sinfo_busy.txt", version))
    assert sorted({(r.node, r.partition) for r in rows}) == [
        ("node1", "debug-4090-01"),
        ("node1", "urgent-4090"),
        ("node2", "debug-4090-01"),
        ("node2", "urgent-4090"),
        ("node3", "debug-A10-01"),
    ]
    assert {r.partition for r in rows if r.default} == {"debug-4090-01"}
    node1 = next(r for r in rows if r.node == "node1")
    assert node1.gres == {"rtx4090": 4} and node1.used == {"rtx4090": 2}  # gpu:rtx4090:2(IDX:0-1)
    node2 = next(r for r in rows if r.node == "node2")
    assert node2.used == {"rtx4090": 0}  # gpu:rtx4090:0(IDX:N/A)
    assert not any(r.unavailable for r in rows)


@every_version
def test_parse_squeue_busy(version):
    rows = parse_squeue(captured("cluster_squeue_busy.txt", version))
    jobs = dict(
        line.split("#")[0].strip().split("=")
        for line in captured("cluster_jobs.txt", version).splitlines()
        if "=" in line and not line.startswith("#")
    )
    by_id = {r.job_id: r for r in rows}
    assert by_id[jobs["two"]].gpus == 2 and by_id[jobs["two"]].state == "RUNNING"
    assert by_id[jobs["a10"]].gpus == 3 and by_id[jobs["a10"]].partitions == ["debug-A10-01"]
    assert by_id[jobs["held"]].state == "PENDING"
    assert [r.job_id for r in rows if r.job_id.startswith(jobs["array"] + "_")] == [
        f"{jobs['array']}_{i}" for i in range(3)
    ]
    assert by_id[jobs["both"]].partitions == ["debug-4090-01", "debug-A10-01"]
    assert by_id[jobs["both"]].gpus == 1  # untyped --gres=gpu:1: gres/gpu=1 only


@every_version
def test_summary_busy(version):
    views, totals = summarize(
        parse_sinfo(captured("cluster_sinfo_busy.txt", version)),
        parse_squeue(captured("cluster_squeue_busy.txt", version)),
        user="root",
    )
    assert [v.partition for v in views][0] == "debug-4090-01"  # the default partition first
    v = by_name(views)
    d = v["debug-4090-01"]
    assert (d.gpu_types, d.gpus_total, d.gpus_allocated, d.gpus_free, d.gpus_unavailable) == (["rtx4090"], 8, 2, 6, 0)
    assert (d.nodes, d.pending_jobs, d.running_jobs, d.my_gpus, d.my_jobs) == (2, 2, 1, 2, 1)  # held, both
    a = v["debug-A10-01"]
    assert (a.gpu_types, a.gpus_total, a.gpus_allocated, a.gpus_free, a.gpus_unavailable) == (["a10"], 8, 3, 5, 0)
    assert (a.pending_jobs, a.my_gpus) == (4, 3)  # 3 array tasks + the job pending in two partitions
    u = v["urgent-4090"]  # same nodes as debug-4090-01, no jobs of its own
    assert (u.gpus_total, u.gpus_allocated, u.gpus_free, u.pending_jobs, u.my_gpus) == (8, 2, 6, 0, 0)
    # cluster-wide totals count each node once (node1/node2 are in two partitions)
    assert totals == {
        "a10": {"total": 8, "allocated": 3, "free": 5, "unavailable": 0},
        "rtx4090": {"total": 8, "allocated": 2, "free": 6, "unavailable": 0},
    }
    # another user holds nothing
    views2, _ = summarize(
        parse_sinfo(captured("cluster_sinfo_busy.txt", version)),
        parse_squeue(captured("cluster_squeue_busy.txt", version)),
        user="alice",
    )
    assert all(x.my_gpus == 0 for x in views2)


@every_version
def test_summary_drained_node(version):
    rows = parse_sinfo(captured("cluster_sinfo_drained.txt", version))
    node3 = next(r for r in rows if r.node == "node3")
    assert node3.state == "draining" and node3.unavailable
    views, totals = summarize(rows, parse_squeue(captured("cluster_squeue_busy.txt", version)), user="root")
    a = by_name(views)["debug-A10-01"]
    # the running job keeps its 3 GPUs; the other 5 are on a draining node: not free
    assert (a.gpus_total, a.gpus_allocated, a.gpus_free, a.gpus_unavailable, a.nodes_unavailable) == (8, 3, 0, 5, 1)
    assert totals["a10"] == {"total": 8, "allocated": 3, "free": 0, "unavailable": 5}


@every_version
def test_render_plain_captured(version):
    nodes, queue = (
        parse_sinfo(captured("cluster_sinfo_drained.txt", version)),
        parse_squeue(captured("cluster_squeue_busy.txt", version)),
    )
    views, totals = summarize(nodes, queue, user="root")
    from dataclasses import asdict

    text = clusterview.render_plain({"user": "root", "partitions": [asdict(x) for x in views], "gpu_types": totals})
    lines = text.splitlines()
    assert lines[0].split() == ["PARTITION", "GPU", "TOTAL", "ALLOC", "FREE", "DOWN", "NODES", "PENDING", "MINE"]
    assert lines[1].split() == ["debug-4090-01*", "rtx4090", "8", "2", "6", "0", "2", "2", "2"]
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
    assert [
        node_unavailable(s)
        for s in (
            "idle",
            "mixed",
            "allocated",
            "idle~",
            "down*",
            "drained",
            "draining",
            "idle*",
            "mixed+drain",
            "inval",
        )
    ] == [False] * 4 + [True] * 6


# ---- the command on the test cluster ---------------------------------------------------------
def cluster_json(env=None, trace: Path | None = None) -> dict:
    extra = dict(env or {})
    if trace is not None:
        extra["DANLU_TRACE_SLURM"] = str(trace)
    done = danlu("cluster", "--json", env=extra, check=True, timeout=60)
    return json.loads(done.stdout)


def running_on(nodes=("node1", "node2")) -> set:
    """Ids of jobs running (or completing) on these nodes, whatever their partition."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "R,CG,CF", "-w", ",".join(nodes), "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return set(out.split())


def hold_two_gpus() -> str:
    """A job holding 2 rtx4090 GPUs on node1 for a few minutes (cancelled by the test)."""
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "debug-4090-01",
            "-w",
            "node1",
            "--gres=gpu:rtx4090:2",
            "--time=5",
            "-o",
            "/dev/null",
            "-J",
            "danlu-cluster-view",
            "--wrap",
            "sleep 240",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split(";")[0]


def part(data: dict, name: str) -> dict:
    return next(p for p in data["partitions"] if p["partition"] == name)


@every_version
def test_cluster_facts_from_captured_text(version):
    """What `danlu cluster init` reads (tests/captured/<version>/facts_*, re-captured by facts_capture.sh)."""
    import yaml

    from launcher import cluster_facts as cf

    config = cf.parse_config(captured("facts_config.txt", version))
    assert config["MaxArraySize"] == "1001" and config["KillWait"] == "15 sec"
    assert config["SLURM_VERSION"].startswith(version + ".")
    parts = cf.parse_partitions(captured("facts_partitions.txt", version))
    cf.add_nodes(parts, captured("facts_sinfo.txt", version))
    dpo, a10 = parts["debug-4090-01"], parts["debug-A10-01"]
    assert (dpo.nodes, dpo.default, dpo.max_time, dpo.grace_time) == (["node1", "node2"], True, None, 0)
    assert (dpo.gpus_per_node, dpo.gpu_type, dpo.cpus_per_node, dpo.mem_per_node_mb) == (4, "rtx4090", 32, 64000)
    assert (a10.nodes, a10.default, a10.gpus_per_node, a10.gpu_type) == (["node3"], False, 8, "a10")
    assert cf.parse_assoc(captured("facts_assoc.txt", version)) == ({"max_submit_jobs": None, "max_jobs": None}, {})
    limits, tres = cf.parse_assoc(captured("facts_assoc_grptres.txt", version))  # a user with limits (facts_capture.sh)
    assert (limits, tres) == ({"max_submit_jobs": 30, "max_jobs": None}, {"cpu": 8, "gres/gpu": 4})
    assert cf.parse_assoc("100|20|gres/gpu=8\n50||gres/gpu=4,cpu=64\n") == (
        {"max_submit_jobs": 50, "max_jobs": 20},
        {"gres/gpu": 4, "cpu": 64},
    )  # the tightest of each
    # a job that can never start under it is named (it would pend for ever: AssocGrpGRES)
    assert cf.grp_tres_problem(tres, gpus=8, gpu_type="rtx4090", cpus=8) == (
        "one job asks for 8 GPUs; your association's GrpTRES allows gres/gpu=4 at once"
    )
    assert cf.grp_tres_problem(tres, gpus=4, gpu_type=None, cpus=16) == (
        "one job asks for 16 CPUs; your association's GrpTRES allows cpu=8 at once"
    )
    assert cf.grp_tres_problem({"gres/gpu:a10": 2}, gpus=4, gpu_type="a10", cpus=1).startswith(
        "one job asks for 4 a10 GPUs"
    )
    assert cf.grp_tres_problem(tres, gpus=4, gpu_type="rtx4090", cpus=8) is None
    # a site's names as they are (AutoDetect: nvidia_geforce_rtx_4090), nodes of two GPU types in one partition
    mixed = cf.parse_partitions(
        "PartitionName=gpu:big Default=NO MaxTime=2-00:00:00 GraceTime=00:01:00 Nodes=g[01-03]\n"
    )
    cf.add_nodes(
        mixed,
        "g01|gpu:big|64|500000|gpu:nvidia_geforce_rtx_4090:8(S:0-1)|\n"
        "g02|gpu:big|64|500000|gpu:nvidia_geforce_rtx_4090:8(S:0-1)|\n"
        "g03|gpu:big|48|250000|gpu:a100:4|\n",
    )
    big = mixed["gpu:big"]
    assert (big.nodes, big.max_time, big.grace_time) == (["g01", "g02", "g03"], "2-00:00:00", 60)
    assert (big.gpu_type, big.other_gpu_types, big.gpus_per_node, big.cpus_per_node) == (
        "nvidia_geforce_rtx_4090",
        ["a100"],
        4,
        48,
    )
    facts = cf.ClusterFacts(
        version="24.11.5",
        max_array_size=5001,
        max_job_count=10000,
        kill_wait=30,
        partitions=mixed,
        limits={"max_submit_jobs": 500, "max_jobs": None},
        grp_tres={"gres/gpu": 16, "cpu": 256},
    )
    text = cf.profile_yaml("site", facts)
    assert "your GrpTRES=cpu=256,gres/gpu=16" in text
    profile = yaml.safe_load(text)
    assert profile["partitions"]["gpu:big"] == {
        "nodes": 3,
        "gpus_per_node": 4,
        "gpu_type": "nvidia_geforce_rtx_4090",
        "cpus_per_node": 48,
        "mem_per_node": "250000M",
        "max_time": "2-00:00:00",
    }
    assert profile["default_partition"] == "gpu:big" and profile["max_array_size"] == 5001
    assert "also GPUs of type a100" in text and "your MaxSubmitJobs=500" in text and "Slurm 24.11.5" in text


def test_a_sweep_over_the_controllers_max_job_count_is_refused_without_asking_squeue():
    from launcher import cluster_facts as cf

    facts = cf.ClusterFacts(
        version="24.11.5",
        max_array_size=1001,
        max_job_count=1000,
        kill_wait=30,
        partitions={},
        limits={"max_submit_jobs": None, "max_jobs": None},
    )
    assert cf.submit_limit(facts, None, 1500) == (
        "1500 new jobs (each run is one, array tasks too) exceed the cluster's MaxJobCount (all users' jobs), 1000"
    )
    assert cf.submit_limit(facts, None, 10) is None  # small next to it: the whole queue is not counted


def test_profile_contradicting_the_live_cluster_is_named_with_both_values():
    from launcher import cluster_facts as cf
    from launcher.spec.options import ClusterSpec, PartitionSpec

    parts = cf.parse_partitions(captured("facts_partitions.txt"))
    cf.add_nodes(parts, captured("facts_sinfo.txt"))
    facts = cf.ClusterFacts(
        version="22.05.8",
        max_array_size=1001,
        max_job_count=200000,
        kill_wait=15,
        partitions=parts,
        limits={"max_submit_jobs": None, "max_jobs": None},
    )
    right = ClusterSpec(
        name="tc",
        kind="slurm",
        max_array_size=1001,
        partitions={
            "debug-4090-01": PartitionSpec(
                nodes=2, gpus_per_node=4, gpu_type="rtx4090", cpus_per_node=32, mem_per_node="64000M"
            )
        },
    )
    assert cf.contradictions(right, facts, ["debug-4090-01"]) == []
    wrong = ClusterSpec(
        name="tc",
        kind="slurm",
        max_array_size=5000,
        partitions={
            "debug-4090-01": PartitionSpec(
                nodes=4, gpus_per_node=4, gpu_type="4090", cpus_per_node=32, mem_per_node="62.5G"
            )
        },
    )
    said = cf.contradictions(wrong, facts, ["debug-4090-01", "gpu-gone"])
    assert said[0] == (
        "cluster tc: max_array_size is 5000 in the profile but MaxArraySize is 1001 on the live "
        "cluster; arrays are split at 1001"
    )
    assert "partition debug-4090-01: nodes is 4 in the profile, 2 on the live cluster" in said[1]
    assert "gpu_type is 4090 in the profile, rtx4090 (as gres.conf names it) on the live cluster" in said[2]
    assert (
        "partition 'gpu-gone' is not on the live cluster (it has debug-4090-01, debug-A10-01, urgent-4090)" in said[-1]
        and len(said) == 4
    )  # 62.5G is no whole number of MB: not compared
    assert cf._mb("64000M") == 64000 and cf._mb("250G") == 256000 and cf._mb("1T") == 1048576  # noqa: SLF001


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
                d,
                subprocess.getoutput("sinfo -N -O NodeList,StateLong,GresUsed; squeue"),
            )
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


@pytest.mark.slurm
def test_cluster_init_writes_a_profile_the_experiments_validate_and_submit_with(slurm_cluster, danlu_env, tmp_path):
    """`danlu cluster init NAME` reads the live test cluster (partitions, nodes, GPU types as gres.conf names them,
    limits) into ~/.config/danlu/jobs/cluster/NAME.yaml; the suite's experiments validate against it, one
    submits and completes; the profile agrees with the hand-written jobs/cluster/testcluster.yaml."""
    import yaml
    from danlu_helpers import wait_status

    env = dict(danlu_env, XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = danlu("cluster", "init", "live", env=env, check=True)
    path = tmp_path / "config" / "danlu" / "jobs" / "cluster" / "live.yaml"
    assert done.stdout.strip() == str(path) and f"Slurm {slurm_cluster.version}." in path.read_text()
    profile = yaml.safe_load(path.read_text())
    written = yaml.safe_load((Path(__file__).parent.parent / "jobs" / "cluster" / "testcluster.yaml").read_text())
    assert profile["default_partition"] == written["default_partition"] == "debug-4090-01"
    assert profile["max_array_size"] == written["max_array_size"] == 1001
    for name, p in written["partitions"].items():
        assert {k: profile["partitions"][name][k] for k in p} == p, (name, profile["partitions"][name])
    again = danlu("cluster", "init", "live", env=env)
    assert again.returncode == 2 and "exists already" in again.stderr and "hint: pass --force" in again.stderr
    for experiment in (
        ["experiment=tiny_dpo", "resources.gpus_per_node=2"],
        ["experiment=tiny_ibq"],
        ["experiment=tiny_lightning"],
        ["experiment=tiny_dpo", "resources.partition=debug-A10-01", "resources.gpus_per_node=8"],
    ):
        dry = danlu("submit", "cluster=live", *experiment, "--dry-run", env=env)
        assert dry.returncode == 0, (experiment, dry.stderr)
    too_many = danlu("submit", "cluster=live", "experiment=tiny_dpo", "resources.gpus_per_node=5", "--dry-run", env=env)
    assert too_many.returncode == 2 and "gpus" in too_many.stderr.lower(), too_many.stderr  # rtx4090 nodes have 4
    danlu(
        "submit",
        "cluster=live",
        "experiment=tiny_dpo",
        "launch=python",
        "args.max_train_steps=3",
        "--name",
        "on-live",
        env=env,
        check=True,
    )
    (item,) = wait_status("on-live", env, timeout=240)
    assert item["state"] == "COMPLETED", item


@pytest.mark.slurm
def test_a_sweep_over_the_submit_limit_is_refused_before_anything_is_queued(slurm_cluster, danlu_env):
    """A QOS with MaxSubmitJobsPerUser=2 (sacctmgr, on the test cluster): a 3-run sweep in it is refused before
    anything is queued, with --dry-run too; a 2-run sweep goes out; its limit then leaves room for no more."""
    qos = "danlu-two"
    subprocess.run(["sacctmgr", "-i", "add", "qos", qos, "MaxSubmitJobsPerUser=2"], capture_output=True)
    subprocess.run(["sacctmgr", "-i", "modify", "user", "root", "set", f"qos+={qos}"], capture_output=True, check=True)
    sweep = [
        "submit",
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        f"cluster.qos={qos}",
        "resources.extra_sbatch=[--hold]",
    ]
    try:
        for extra in ([], ["--dry-run"]):
            three = danlu(*sweep, "args.seed=0,1,2", "--name", "limited", *extra, env=danlu_env)
            assert three.returncode == 2, three.stderr
            assert (
                "error: 3 new jobs (each run is one, array tasks too) exceed the "
                f"MaxSubmitJobsPerUser of QOS {qos}, 2" in three.stderr
            ), three.stderr
            assert "hint: submit fewer runs at once" in three.stderr
        assert json.loads(danlu("status", "--all", "--json", env=danlu_env, check=True).stdout) == []
        assert subprocess.run(["squeue", "-h", f"--qos={qos}"], capture_output=True, text=True).stdout == ""
        two = json.loads(danlu(*sweep, "args.seed=0,1", "--name", "fits", "--json", env=danlu_env, check=True).stdout)
        assert len(two["runs"]) == 2
        one_more = danlu(*sweep, "args.seed=5", "--name", "over", env=danlu_env)
        assert one_more.returncode == 2 and "and 2 of yours already queued" in one_more.stderr, one_more.stderr
    finally:
        danlu("cancel", "fits", env=danlu_env)
        subprocess.run(["sacctmgr", "-i", "modify", "user", "root", "set", f"qos-={qos}"], capture_output=True)
        subprocess.run(["sacctmgr", "-i", "delete", "qos", qos], capture_output=True)


@pytest.mark.disruptive  # limits every job of root's association while it runs: alone (tests/run.sh)
def test_a_job_over_the_association_grptres_is_refused_before_anything_is_queued(slurm_cluster, danlu_env):
    """GrpTRES=gres/gpu=2 on the user's association (sacctmgr, on the test cluster): a job of 4 GPUs could never
    start (AssocGrpGRES); submit says so, with --dry-run too, and queues nothing; a job of 2 GPUs goes out."""
    limit = ["sacctmgr", "-i", "modify", "user", "root", "set"]
    subprocess.run(limit + ["GrpTRES=gres/gpu=2"], capture_output=True, check=True)
    job = [
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.extra_sbatch=[--hold]",
        "--refresh-cluster",
    ]
    try:
        for extra in (["--dry-run"], []):
            big = danlu(*job, "resources.gpus_per_node=4", *extra, env=danlu_env)
            assert big.returncode == 2, big.stderr
            assert (
                "error: one job asks for 4 GPUs; your association's GrpTRES allows gres/gpu=2 at once: it "
                "would pend for ever" in big.stderr
            ), big.stderr
            assert "hint: ask for fewer GPUs/CPUs per job" in big.stderr
        assert json.loads(danlu("status", "--all", "--json", env=danlu_env, check=True).stdout) == []
        small = danlu(*job, "resources.gpus_per_node=2", "--name", "fits", env=danlu_env)
        assert small.returncode == 0, small.stderr
    finally:
        danlu("cancel", "fits", env=danlu_env)
        subprocess.run(limit + ["GrpTRES=gres/gpu=-1"], capture_output=True)
    assert (
        "gres/gpu"
        not in subprocess.run(
            ["sacctmgr", "-n", "-P", "show", "assoc", "user=root", "format=GrpTRES"], capture_output=True, text=True
        ).stdout
    )
