"""What makes a 10,000-run sweep fast must not change what any run gets (bench/run.py section 1), and
`DANLU_TIMINGS` says where a submit's time goes (section 3). No Slurm needed."""

from __future__ import annotations

import json

import pytest
from danlu_helpers import REPO, danlu, danlu_env  # noqa: F401 -- danlu_env: a fixture

from launcher.errors import UserError
from launcher.spec.compose import Composer

BASE = ["experiment=tiny_dpo", "cluster=testcluster"]


def test_every_run_of_a_sweep_gets_what_it_would_get_alone():
    """A value override is checked by OmegaConf once per key and value type where its node takes such values as
    they are; every point of the sweep must still equal that point composed on its own (no cache reused)."""
    sweep = ["args.seed=range(0,4)", "resources.nodes=1,'2'", "+args.tag=x,'${experiment}',7"]
    runs = Composer().runs(BASE + sweep, multirun=True)
    assert len(runs) == 4 * 2 * 3
    for run in runs:
        alone = Composer().runs(run.overrides)[0]
        assert run.resolved == alone.resolved, run.overrides
        assert run.spec == alone.spec, run.overrides
    nodes = {r.spec.resources.nodes for r in runs}
    assert nodes == {1, 2} and all(type(n) is int for n in nodes)  # '2' converted by OmegaConf, not passed through
    tags = {r.spec.args["tag"] for r in runs}
    assert tags == {"x", "tiny_dpo", 7}


def test_a_bad_value_after_good_ones_of_the_same_key_is_still_refused():
    with pytest.raises(UserError, match="resources.nodes"):
        Composer().runs(BASE + ["resources.nodes=1,2,three"], multirun=True)


def test_danlu_timings_writes_where_a_submit_went(tmp_path, danlu_env):
    env = danlu_env
    out = tmp_path / "timings.json"
    done = danlu(
        "submit",
        "--dry-run",
        "-m",
        "experiment=tiny_dpo",
        "cluster=local",
        "args.seed=range(0,3)",
        env=dict(env, DANLU_TIMINGS=str(out)),
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    phases = record["phases"]
    for name in ("imports", "composition", "checks", "planning and rendering"):
        assert phases[name] > 0, name
    assert record["entered"] <= record["exited"]
    assert sum(phases.values()) <= record["exited"] - record["entered"]
