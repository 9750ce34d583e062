"""`danlu report`: a 2x2 sweep of tiny_dpo (two beta_dpo values x two seeds) on the embedded local default; the
report's best point is checked against the rank logs read here by a plain regex, not by danlu's reader."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from danlu_helpers import danlu, danlu_env  # noqa: F401

STEPS = 6


def _losses(run_dir: Path) -> dict:
    text = "".join(p.read_text() for p in sorted(run_dir.glob("logs/attempt-*/restart-*/rank0.log")) +
                   sorted(run_dir.glob("logs/attempt-*/restart-*/node0.log")))
    line = re.compile(r"^step=(\d+) loss=([\d.]+) .*rank=0\b", re.M)
    return {int(m.group(1)): float(m.group(2)) for m in line.finditer(text)}


def test_report_picks_the_best_point_by_mean_loss_over_seeds(danlu_env):
    done = danlu("submit", "experiment=tiny_dpo", "-m", "args.beta_dpo=500,5000", "args.seed=0,1",
                 f"args.max_train_steps={STEPS}", "+args.pretrain_steps=5", "--name", "rep", "--wait",
                 env=danlu_env, timeout=600)
    assert done.returncode == 0, done.stderr
    out = danlu("report", "rep", "--json", env=danlu_env, check=True)
    report = json.loads(out.stdout)
    assert report["metric"] == "loss" and report["mode"] == "min"
    assert report["keys"] == ["args.beta_dpo", "args.seed"] and report["seed_key"] == "args.seed"
    runs = {r["run"]: r for r in report["runs"]}
    assert len(runs) == 4 and all(r["state"] == "COMPLETED" and r["steps"] == STEPS for r in runs.values())
    status = {i["run"]: i for i in json.loads(danlu("status", "--all", "--json", "rep", env=danlu_env,
                                                    check=True).stdout)}
    means = {}
    for run, r in runs.items():
        losses = _losses(Path(status[run]["run_dir"]))
        assert sorted(losses) == list(range(1, STEPS + 1))
        assert r["series"]["loss"]["steps"] == list(range(1, STEPS + 1))
        assert r["series"]["loss"]["values"] == [losses[s] for s in range(1, STEPS + 1)]
        assert r["best"] == min(losses.values()) and r["last"] == losses[STEPS]
        means.setdefault(r["values"]["args.beta_dpo"], []).append(min(losses.values()))
    best_beta = min(means, key=lambda b: statistics.fmean(means[b]))
    points = {p["values"]["args.beta_dpo"]: p for p in report["points"]}
    assert set(points) == {"500", "5000"} and all(sorted(p["seeds"]) == ["0", "1"] for p in points.values())
    assert [b for b, p in points.items() if p["best_point"]] == [best_beta]
    assert abs(points[best_beta]["mean"] - statistics.fmean(means[best_beta])) < 1e-9
    text = danlu("report", "rep", env={**danlu_env, "PYTHONIOENCODING": "utf-8"}, check=True).stdout
    starred = [ln for ln in text.splitlines() if ln.startswith("*")]
    assert len(starred) == 2 and any(f" {best_beta} " in ln + " " for ln in starred)
    assert any(c in text for c in "▁▂▃▄▅▆▇█")  # a sparkline per run


def test_report_refuses_an_unknown_sweep_or_metric(danlu_env):
    bad = danlu("report", "nope", env=danlu_env)
    assert bad.returncode == 2 and "no sweep named 'nope'" in bad.stderr and "hint:" in bad.stderr
