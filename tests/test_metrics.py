"""Metrics read from the step lines of real run logs (tests/captured/metrics: a tiny_dpo rank log of the second
start of a preempted 2x2 run, with its time index, and the node logs of the three starts of an accelerate 2x2 run
that was preempted twice; machine paths replaced by <repo>, <python>, <runs>)."""

from __future__ import annotations

from pathlib import Path

from launcher.layout import RestartLayout
from launcher.metrics.log_lines import parse, read_log, run_points, tail_step
from launcher.metrics.series import choose_metric, default_mode, from_points

CAPTURED = Path(__file__).with_name("captured") / "metrics"


def test_a_rank_log_gives_every_metric_of_every_step_with_the_time_it_was_written():
    points = read_log(CAPTURED / "tiny_dpo.rank0.log")
    assert list(points) == ["loss", "implicit_acc", "mse_w", "mse_l", "step_time"]
    loss = points["loss"]
    steps = [p[0] for p in loss]
    assert steps == list(range(18, 18 + len(steps))) and len(steps) > 20  # a restart resumed at step 17
    assert loss[0][:2] == (18, 0.44871)  # as printed
    stamps = [p[2] for p in loss]
    assert all(t is not None for t in stamps) and stamps == sorted(stamps) and stamps[-1] - stamps[0] > 0
    assert all(p[1] > 0 for p in points["step_time"])  # "0.366s": the unit is dropped


def test_other_ranks_lines_and_lines_that_only_name_a_step_are_not_metrics():
    got = parse(
        b"[default0]:step=3 loss=1.5 rank=1\n[default1]:step=3 loss=1.25 rank=0\npretrain step=3/20 x=1\n"
        b"resumed from checkpoint step=10 rank=0\nreceived signal SIGUSR1 at step=12; stopping\n"
        b"step=4 loss=nan? acc=0.5 epoch=2\n"
    )
    assert got == {"loss": [(3, 1.25, None)], "acc": [(4, 0.5, None)]}


def test_restarts_that_train_steps_again_keep_the_latest_value_of_each_step():
    restarts = [RestartLayout(CAPTURED / "accelerate-preempted" / f"restart-{k}", k) for k in range(3)]
    points = run_points([restarts])
    raw = [p[0] for p in points["loss"]]
    assert len(raw) > len(set(raw))  # restart 1 resumed from step 24, before restart 0's last step
    series = from_points("loss", "log", points["loss"])
    assert series.steps == sorted(set(raw)) and series.steps[0] == 1
    last_restart = parse((restarts[-1].root / "node0.log").read_bytes())["loss"]
    assert series.last() == last_restart[-1][:2]  # the end of the run is the last restart's last step
    step, value = series.best("min")
    assert value == min(series.values) and step in series.steps


def test_the_tail_of_a_running_runs_log_gives_its_latest_step_cheaply():
    log = CAPTURED / "accelerate-preempted" / "restart-2" / "node0.log"
    step, values = tail_step(log)
    assert (step, values["loss"]) == parse(log.read_bytes())["loss"][-1][:2]


def test_the_metric_a_report_ranks_by_and_which_way_is_better():
    assert choose_metric(["step_time", "rec", "loss"]) == "loss"
    assert choose_metric(["acc", "train_loss", "val_loss"]) == "train_loss"
    assert choose_metric(["acc", "loss"], wanted="acc") == "acc"
    assert choose_metric([]) is None
    assert [default_mode(n) for n in ("loss", "val_loss", "implicit_acc", "codebook_usage", "acc_loss")] == [
        "min",
        "min",
        "max",
        "max",
        "min",
    ]


def test_lightning_csv_logs_of_every_start_in_version_order():
    """Lightning's CSVLogger files of a 2x2 run preempted twice: one version folder per start."""
    from launcher.metrics.csv_logs import find, read
    from launcher.metrics.log_lines import merge

    root = CAPTURED / "lightning-preempted"
    files = find([root])
    assert [p.parent.name for p in files] == ["version_0", "version_1", "version_2"]
    points = merge(read(p) for p in files)
    assert set(points) == {"train_loss", "val_loss"}  # epoch and step are not metrics
    train = from_points("train_loss", "csv", points["train_loss"])
    val = from_points("val_loss", "csv", points["val_loss"])
    assert len(train) > len(val) > 0 and train.steps == sorted(train.steps)
    first = read(files[0])["train_loss"][0]
    assert (train.steps[0], train.values[0]) == first[:2]
    last = read(files[-1])["train_loss"][-1]
    assert train.last() == last[:2]
    assert find([root], max_depth=1) == []  # lightning_logs/version_N/ is two folders down


def test_status_reads_a_running_runs_latest_start_and_falls_back_to_the_one_before(tmp_path):
    import shutil

    from launcher.layout import RunLayout
    from launcher.metrics.live import add_progress, latest

    run = RunLayout(tmp_path / "run")
    for k in range(3):
        shutil.copytree(CAPTURED / "accelerate-preempted" / f"restart-{k}", run.attempt(1).restart(k).root)
    last = parse((CAPTURED / "accelerate-preempted" / "restart-2" / "node0.log").read_bytes())
    want = (last["loss"][-1][0], {name: pts[-1][1] for name, pts in last.items()})
    assert latest(str(run.root), 1) == want
    run.attempt(1).restart(3).root.mkdir()  # a start that has only just begun: no log yet
    assert latest(str(run.root), 1) == want
    items = [
        {"state": "RUNNING", "run_dir": str(run.root), "attempt": 1},
        {"state": "PENDING", "run_dir": str(run.root), "attempt": 1},
        {"state": "RUNNING", "run_dir": str(tmp_path / "none"), "attempt": 1},
    ]
    assert add_progress(items) == "loss"
    assert (items[0]["step"], items[0]["metrics"]) == want
    assert items[1]["step"] is None and items[2]["metrics"] is None


def test_a_log_read_again_parses_only_what_it_gained(tmp_path, monkeypatch):
    """The cache (metrics/cache.py): the same columns as a whole read, after every append; a line still being
    written is left for the next read; a log replaced by another file is read anew."""
    import os

    from launcher.metrics import cache
    from launcher.metrics.log_lines import parse as parse_all

    monkeypatch.setenv("DANLU_HOME", str(tmp_path / "home"))
    log = tmp_path / "rank0.log"
    text = (CAPTURED / "tiny_dpo.rank0.log").read_bytes()
    cut = text.index(b"\n", len(text) // 2) + 1
    log.write_bytes(text[:cut] + b"step=999 loss=0.1")  # the last line is not complete yet
    parsed = []

    def parse(data, start):
        parsed.append((start, len(data)))
        return parse_all(data, start)

    def columns():
        return {n: (list(s), list(v)) for n, (s, v, _) in cache.read_columns(log, parse).items()}

    def whole(data):
        return {n: ([p[0] for p in pts], [p[1] for p in pts]) for n, pts in parse_all(data).items()}

    assert columns() == whole(text[:cut]) and parsed == [(0, cut)]
    assert columns() == whole(text[:cut]) and len(parsed) == 1  # unchanged: nothing parsed
    with open(log, "wb") as f:
        f.write(text)
    assert columns() == whole(text) and parsed[-1] == (cut, len(text) - cut)
    assert cache.cache_file(log).parent == tmp_path / "home" / "cache" / "metrics"
    replaced = tmp_path / "other.log"
    replaced.write_bytes(text[:cut])
    os.replace(replaced, log)  # another file (inode) at the same path
    assert columns() == whole(text[:cut]) and parsed[-1] == (0, cut)


def test_a_line_read_by_its_layout_gives_what_the_token_reader_gives():
    """parse() reads a line laid out like one seen before with one regex (log_lines._Shape): on every line of the
    captured logs and on lines built to differ from their layout in one token, the result is _step_line's."""
    from launcher.metrics.log_lines import _Shape, _step_line

    lines = [
        ln
        for p in [CAPTURED / "tiny_dpo.rank0.log", *sorted(CAPTURED.glob("accelerate-preempted/*/*.log"))]
        for ln in p.read_bytes().split(b"\n")
        if b"step=" in ln
    ]
    base = b"[default0]:step=7 loss=0.25 acc=50% step_time=0.3s lr=1e-05, rank=0 world_size=4 phase train"
    lines += [
        base,
        base.replace(b"rank=0", b"rank=1"),
        base.replace(b"loss=0.25", b"loss=n/a"),
        base.replace(b"step=7", b"step=7/9"),
        base.replace(b"phase train", b"phase x=1"),
        base.replace(b"[default0]:", b"[default1]:"),
        base + b" step=8",
        base.replace(b"acc=50%", b"acc="),
    ]
    shapes = [_Shape(ln) for ln in lines if _step_line(ln) is not None]
    assert len(shapes) > 20
    for line in lines:
        want = _step_line(line)
        for shape in shapes:
            got = shape.read(line)
            assert got is None or got == want, (line, got, want)
    text = b"\n".join(lines)
    by_token: dict = {}
    for line in lines:
        got = _step_line(line)
        for name, value in got[1] if got else []:
            by_token.setdefault(name, []).append((got[0], value, None))
    assert parse(text) == by_token
