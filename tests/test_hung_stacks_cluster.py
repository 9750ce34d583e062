"""The stacks of every rank of a hung 2-node job, on the test cluster: the run ends FAILED with a reason that
names where the waiting ranks and the hung rank were, and the restart's logs hold a stack for each of the 4 ranks,
read by py-spy where it can attach and by faulthandler where no tracer may be used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, submit_json, wait_for_log_text, wait_status  # noqa: F401

from launcher.layout import SweepLayout
from launcher.state.stack_text import parse_sections

pytestmark = pytest.mark.slurm

# rank 2 (node 2's first) blocks in its own loop at step 4; ranks 0, 1 and 3 then wait in the next all-reduce, so
# every node falls silent and the first watchdog to see it names the node
HUNG = [
    "experiment=tiny_ibq",
    "launch=torchrun",
    "cluster=testcluster",
    "resources.nodes=2",
    "resources.gpus_per_node=2",
    "launch.hang_timeout_s=15",
    "args.max_train_steps=30",
    "args.sleep_per_step=0.5",
    "args.hang_at_step=4",
    "args.hang_rank=2",
]
REASON = re.compile(r"^hung: 3 of 4 ranks in (?P<wait>.+), rank 2 in (?P<hung>[^;]+); no output on node[12] for \d+s")


@pytest.mark.parametrize("way", ["py-spy", "faulthandler"])
def test_a_hung_two_node_run_names_where_its_ranks_waited(slurm_cluster, danlu_env, way):
    name = f"hung-{way}"
    stacks = [] if way == "py-spy" else ["launch.hang_stacks=faulthandler"]
    submit_json(*HUNG, *stacks, "--name", name, env=danlu_env)
    (item,) = wait_status(name, danlu_env, timeout=300)
    assert item["state"] == "FAILED", item
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1).restart(0)
    files = restart.stacks_files()
    assert len(files) == 2, files  # one per node
    text = "".join(p.read_text() for p in files)
    sections = parse_sections(text)
    ways = {s.rank: s.way for s in sections}
    headers = [f"rank {s.rank} via {s.way}: {s.note}" for s in sections]  # a note says why native frames are missing
    assert sorted(ways) == [0, 1, 2, 3] and all(w.startswith(way) for w in ways.values()), headers
    assert "train.py" in text
    found = REASON.match(item["reason"] or "")
    assert found, item["reason"]
    # the waiting ranks are in DDP's gradient all-reduce at the backward's line, named by its native function
    # where py-spy read the native frames of any of them
    native = any(ways[r] == "py-spy --native" for r in (0, 1, 3))
    wait = "c10d::Reducer::finalize_backward" if native else "_engine_run_backward"
    assert re.fullmatch(rf"{wait} \(train\.py:\d+\)", found["wait"]), (found["wait"], headers)
    # the hung rank in the program's own loop, at another line
    assert re.fullmatch(r"main \(train\.py:\d+\)", found["hung"]) and found["hung"] != found["wait"], found["hung"]
    # `danlu stacks` shows what the agents recorded before ending the run
    shown = danlu("stacks", f"{name}/0", env=danlu_env)
    assert shown.returncode == 0 and "recorded before ending it as hung" in shown.stderr, shown.stderr
    ranks = set(re.findall(r"^\[node\d rank(\d)\] pid \d+, read by ", shown.stdout, re.M))
    assert ranks == {"0", "1", "2", "3"}, shown.stdout[-2000:]


def test_stacks_of_a_running_two_node_run_are_read_and_the_run_goes_on(slurm_cluster, danlu_env):
    name = "asked"
    running = [a for a in HUNG if "hang" not in a and "max_train_steps" not in a and "sleep_per_step" not in a]
    submit_json(*running, "args.max_train_steps=80", "args.sleep_per_step=0.5", "--name", name, env=danlu_env)
    wait_status(name, danlu_env, timeout=240, started=True)
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1).restart(0)
    wait_for_log_text(restart.root, "step=2", timeout=120)
    done = danlu("stacks", f"{name}/0", "--json", env=danlu_env)
    assert done.returncode == 0, done.stderr
    stacks = json.loads(done.stdout)
    assert [s["rank"] for s in stacks] == [0, 1, 2, 3], done.stdout[-2000:]
    assert {s["host"] for s in stacks} == {"node1", "node2"}, stacks
    for s in stacks:
        assert s["way"].startswith("py-spy"), s
        assert re.search(r"\bmain \(.*train\.py:\d+\)", s["text"]), s["text"][-1500:]
    assert "goes on" in done.stderr, done.stderr
    text = danlu("stacks", f"{name}/0", env=danlu_env)  # the same, labelled like `danlu logs`
    assert text.returncode == 0 and re.search(r"^\[node2 rank3\] ", text.stdout, re.M), text.stdout[-1500:]
    assert re.search(r"^where: (\d of 4 ranks|rank \d) in .* \(train\.py:\d+\)", text.stderr, re.M), text.stderr
    (item,) = wait_status(name, danlu_env, timeout=240)
    assert item["state"] == "COMPLETED", item  # asking never stopped it
    # a finished run that never hung has no stacks to show
    after = danlu("stacks", f"{name}/0", env=danlu_env)
    assert after.returncode == 2 and "not RUNNING" in after.stderr and "hint:" in after.stderr, after.stderr
