"""Metrics from TensorBoard event files, written here by the writers programs use (torch's SummaryWriter, as
Lightning's TensorBoardLogger and accelerate's tensorboard tracker do) and read back with tensorboard's own loader
(launcher/metrics/tb_events.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from launcher.metrics import tb_events
from launcher.metrics.log_lines import merge
from launcher.metrics.runs import run_series
from launcher.metrics.series import from_points


def _write(logdir: Path, points: dict, start: int, stop: int) -> None:
    """One start of a run: a writer of its own (a new event file), scalars for steps start..stop-1."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for step in range(start, stop):
        for tag, f in points.items():
            w.add_scalar(tag, f(step), step)
    import numpy

    w.add_histogram("weights", numpy.array([0.1, 0.2, 0.3]), start)  # not a scalar: never a metric
    w.add_text("note", "hello", start)
    w.close()


def test_event_files_of_two_starts_give_each_scalar_with_a_replayed_step_keeping_its_latest_value(tmp_path):
    out = tmp_path / "output"
    first = {"train/loss": lambda s: 1.0 / (s + 1), "lr": lambda s: 1e-3, "epoch": lambda s: 0}  # epoch: a counter
    _write(out / "logs" / "tiny", first, 0, 12)
    time.sleep(1.1)  # the next start's file is named by a later second
    _write(out / "logs" / "tiny", {"train/loss": lambda s: 10.0 + s, "lr": lambda s: 5e-4}, 10, 20)
    files = tb_events.find([out])
    assert len(files) == 2 and files[0].name < files[1].name, files
    points = merge(tb_events.read(p) for p in files)
    assert set(points) == {"train/loss", "lr"}, set(points)
    loss = from_points("train/loss", "tensorboard", points["train/loss"])
    assert list(loss.steps) == list(range(20))
    assert loss.values[9] == pytest.approx(0.1)  # the first start's, not trained again
    assert loss.values[10] == pytest.approx(20.0) and loss.values[19] == pytest.approx(29.0)  # replayed: latest
    assert all(t is not None and abs(t - time.time()) < 600 for t in loss.times)
    assert tb_events.find([out], max_depth=1) == []  # logs/tiny/ is two folders down


def test_a_file_cut_short_by_a_killed_writer_gives_what_it_has(tmp_path):
    _write(tmp_path, {"loss": lambda s: float(s)}, 0, 50)
    (path,) = tb_events.find([tmp_path])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    got = tb_events.read(path)["loss"]
    assert 0 < len(got) < 50 and [p[0] for p in got] == list(range(len(got)))


def test_tensor_scalars_as_tf2_writes_them_are_read_and_others_are_not(tmp_path):
    """tf.summary.scalar writes a tensor with the scalars plugin named on the tag's first value only."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    w = EventFileWriter(str(tmp_path))
    for step in range(5):
        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        values = [
            summary_pb2.Summary.Value(
                tag="acc", tensor=tensor_util.make_tensor_proto(0.5 + step / 10), metadata=meta if step == 0 else None
            ),
            summary_pb2.Summary.Value(tag="vec", tensor=tensor_util.make_tensor_proto([1.0, 2.0])),
        ]
        w.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=values)))
    w.close()
    (path,) = tb_events.find([tmp_path])
    got = tb_events.read(path)
    assert set(got) == {"acc"}, set(got)
    assert [p[1] for p in got["acc"]] == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])


def test_a_run_without_tensorboard_installed_says_which_files_it_did_not_read(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _write(run / "output" / "tb", {"loss": lambda s: 2.0 - s / 10}, 0, 8)
    found = run_series(run, 1)
    assert found["loss"].source == "tensorboard" and len(found["loss"]) == 8
    assert math.isclose(found["loss"].best("min")[1], 1.3, rel_tol=1e-6)
    monkeypatch.setattr(tb_events, "available", lambda: False)
    unread: list = []
    assert "loss" not in run_series(run, 1, unread)
    assert unread == tb_events.find([run / "output"]) and len(unread) == 1
