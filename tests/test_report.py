"""`danlu report`: a 2x2 sweep of tiny_dpo (two beta_dpo values x two seeds) on the test cluster; the report's
best point is checked against the rank logs read here by a plain regex, not by
danlu's reader. `--html`: the page opened in a real headless browser (Debian's chromium), its DOM and pixels."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Dict

import browser_helpers
import pytest
from danlu_helpers import danlu, private_env, status_json, wait_status

STEPS = 6
SWEEP = (
    "experiment=tiny_dpo",
    "-m",
    "args.beta_dpo=500,5000",
    "args.seed=0,1",
    f"args.max_train_steps={STEPS}",
    "+args.pretrain_steps=5",
)


def _losses(run_dir: Path) -> dict:
    text = "".join(
        p.read_text()
        for p in sorted(run_dir.glob("logs/attempt-*/restart-*/rank0.log"))
        + sorted(run_dir.glob("logs/attempt-*/restart-*/node0.log"))
    )
    line = re.compile(r"^step=(\d+) loss=([\d.]+) .*rank=0\b", re.M)
    return {int(m.group(1)): float(m.group(2)) for m in line.finditer(text)}


def _check_against_the_logs(sweep: str, env: Dict[str, str]) -> dict:
    """The report of a finished 2x2 sweep, each figure checked against the rank logs; returns it."""
    out = danlu("report", sweep, "--json", env=env, check=True)
    report = json.loads(out.stdout)
    assert report["metric"] == "loss" and report["mode"] == "min"
    assert report["keys"] == ["args.beta_dpo", "args.seed"] and report["seed_key"] == "args.seed"
    runs = {r["run"]: r for r in report["runs"]}
    assert len(runs) == 4 and all(r["state"] == "COMPLETED" and r["steps"] == STEPS for r in runs.values()), runs
    status = {i["run"]: i for i in status_json(sweep, env=env)}
    means: Dict[str, list] = {}
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
    text = danlu("report", sweep, env={**env, "PYTHONIOENCODING": "utf-8"}, check=True).stdout
    starred = [ln for ln in text.splitlines() if ln.startswith("*")]
    assert len(starred) == 2 and any(f" {best_beta} " in ln + " " for ln in starred)
    assert any(c in text for c in "▁▂▃▄▅▆▇█")  # a sparkline per run
    return report


@pytest.fixture(scope="module")
def swept(slurm_cluster, tmp_path_factory) -> Dict[str, str]:
    """The 2x2 sweep on the test cluster, once for this module (the page's tests read the same runs)."""
    env = private_env(tmp_path_factory.mktemp("report"))
    danlu("submit", *SWEEP, "cluster=testcluster", "--name", "rep", env=env, check=True)
    items = wait_status("rep", env, timeout=900, poll=10)
    assert [i["state"] for i in items] == ["COMPLETED"] * 4, items
    return env


@pytest.mark.slurm
def test_report_of_a_sweep_on_the_test_cluster_picks_the_best_point_by_mean_loss_over_seeds(swept):
    _check_against_the_logs("rep", swept)


@pytest.mark.slurm
def test_report_page_renders_in_a_browser(swept, tmp_path):
    env = swept
    report = json.loads(danlu("report", "rep", "--json", env=env, check=True).stdout)
    page = tmp_path / "rep.html"
    done = danlu("report", "rep", "--html", str(page), env=env, check=True)
    assert f"wrote {page}" in done.stderr
    assert done.stdout.startswith("# loss (min)")  # the terminal's report is printed as well

    # sorted on load by the worst best loss first: the winner is the last row
    shown = browser_helpers.render(page, tmp_path / "profile", "#sort=-best(loss)")
    assert shown.console == [], shown.console  # no error, no warning, nothing at all
    rows = [e for e in shown.find("tr") if e.within("table", id="runs") and e.within("tbody")]
    order = [re.findall(r"rep/\d", e.text)[0] for e in rows]  # the row's run
    by_best = sorted(report["runs"], key=lambda r: r["best"], reverse=True)
    assert order == [r["run"] for r in by_best], (order, by_best)
    assert rows[-1].text.startswith("*") and not any(e.text.startswith("*") for e in rows[:-1])
    assert len([e for e in shown.find("tr") if e.within("table", id="points") and e.within("tbody")]) == 2

    metrics = list(dict.fromkeys(n for r in report["runs"] for n in r["series"]))
    plots = shown.find("div", cls="plot")
    assert plots[0].attrs["data-metric"] == "loss" and {p.attrs["data-metric"] for p in plots} == set(metrics)
    for plot in plots:  # plotly drew it: a line per run, in the plot's own SVG
        assert [e for e in shown.find("svg", cls="main-svg") if e.within(id=plot.attrs["id"])], plot.attrs
        traces = [e for e in shown.find("g", cls="trace") if e.within(id=plot.attrs["id"]) and "scatter" in e.classes]
        assert len(traces) == 4, (plot.attrs, len(traces))
    links = [e for e in shown.find("a") if e.attrs.get("href", "").startswith("#log-")]
    assert len(links) == 4
    logs = {e.attrs["id"]: e for e in shown.find("details")}
    assert set(logs) == {a.attrs["href"][1:] for a in links}
    assert all(f"step={STEPS} loss=" in d.text for d in logs.values())

    # the pixels: the lines in the two beta_dpo values' colours (500 darkest, 5000 lightest of the scale)
    from launcher.views.report_html import VIRIDIS

    _, _, pixels = browser_helpers.screenshot(page, tmp_path / "profile", tmp_path / "shot.png")
    for colour in (VIRIDIS[0], VIRIDIS[-1]):
        assert sum(browser_helpers.near(p, colour) for p in pixels) > 300, colour


def test_the_browser_check_sees_a_broken_page(tmp_path):
    """The console check above can fail: a page whose script throws is caught by it."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><div id=x></div><script>console.error('boom');"
        "Plotly.newPlot('x', [])</script></body></html>"
    )
    shown = browser_helpers.render(page, tmp_path / "profile", budget_ms=2000)
    assert [m for _, m in shown.console] == ["boom", "Uncaught ReferenceError: Plotly is not defined"], shown.console
    assert shown.errors() == ["Uncaught ReferenceError: Plotly is not defined"]


@pytest.mark.slurm
def test_report_html_bad_target(swept, tmp_path):
    env = swept
    for target, why in ((tmp_path / "no-such-folder" / "r.html", "no folder"), (tmp_path, "is a directory")):
        bad = danlu("report", "rep", "--html", str(target), env=env)
        assert bad.returncode == 2 and why in bad.stderr and "hint:" in bad.stderr, bad.stderr
        assert bad.stdout == ""
    assert not (tmp_path / "no-such-folder").exists()


@pytest.mark.slurm
def test_report_refuses_an_unknown_sweep_or_metric(swept):
    bad = danlu("report", "nope", env=swept)
    assert bad.returncode == 2 and "no sweep named 'nope'" in bad.stderr and "hint:" in bad.stderr
    bad = danlu("report", "rep", "--metric", "los", env=swept)
    assert bad.returncode == 2 and "no run of rep wrote a metric named 'los'" in bad.stderr, bad.stderr
    assert "hint: metrics found: " in bad.stderr and "loss" in bad.stderr and bad.stdout == ""


@pytest.mark.slurm
def test_report_of_lightning_runs_reads_their_csv_logs_and_their_tensorboard_events(slurm_cluster, tmp_path):
    """Two tiny_lightning runs on the test cluster, the same training, one logging through Lightning's CSVLogger
    and one through its TensorBoardLogger: the report reads each from its own files (source csv / tensorboard),
    and both give the same values, each equal to what the CSV file holds (read here with the csv module)."""
    import csv

    env = private_env(tmp_path)
    danlu(
        "submit",
        "experiment=tiny_lightning",
        "cluster=testcluster",
        "-m",
        "+args.loggers=csv,tensorboard",
        "args.trainer.max_steps=20",
        "--name",
        "lit",
        env=env,
        check=True,
    )
    items = wait_status("lit", env, timeout=600, poll=5)
    assert [i["state"] for i in items] == ["COMPLETED"] * 2, items
    report = json.loads(danlu("report", "lit", "--metric", "val_loss", "--json", env=env, check=True).stdout)
    runs = {
        r["values"]["+args.loggers"] if "+args.loggers" in r["values"] else r["values"]["args.loggers"]: r
        for r in report["runs"]
    }
    assert set(runs) == {"csv", "tensorboard"}, report["runs"]
    by_source = {}
    for logger, r in runs.items():
        for name in ("val_loss", "train_loss"):
            series = r["series"][name]
            assert series["source"] == logger, (name, series["source"])
            by_source.setdefault(name, {})[logger] = series
    run_dir = Path(next(i["run_dir"] for i in items if i["run"] == runs["csv"]["run"]))
    (metrics_csv,) = run_dir.glob("output/lightning_logs/version_*/metrics.csv")
    rows = [row for row in csv.DictReader(metrics_csv.open()) if row.get("val_loss")]
    assert by_source["val_loss"]["csv"]["steps"] == [int(row["step"]) for row in rows] and rows
    assert by_source["val_loss"]["csv"]["values"] == pytest.approx([float(row["val_loss"]) for row in rows])
    for name, got in by_source.items():
        assert got["tensorboard"]["steps"] == got["csv"]["steps"], name
        assert got["tensorboard"]["values"] == pytest.approx(got["csv"]["values"], rel=1e-6), name
    assert report["metric"] == "val_loss" and len({r["best"] for r in runs.values()}) == 1
    tb_dir = Path(next(i["run_dir"] for i in items if i["run"] == runs["tensorboard"]["run"])) / "output"
    assert list(tb_dir.glob("tensorboard/version_0/events.out.tfevents.*")) and not list(tb_dir.glob("lightning_logs"))
