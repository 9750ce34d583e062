"""notify.*: a message per failed run and one when the sweep has ended, sent to a real HTTP server on 127.0.0.1
(issue 17). The webhook's URL is a secret: it must appear in no file danlu wrote."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from danlu_helpers import danlu, private_env, status_json, wait_status

from launcher.webhook import WebhookError, body, deliver, resolve


class Hook:
    """A webhook on 127.0.0.1: records each POST's path and JSON body; answers `codes` in turn, then 200."""

    def __init__(self, codes: Tuple[int, ...] = ()) -> None:
        self.received: List[Tuple[str, dict]] = []
        self.codes = list(codes)
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append((self.path, json.loads(data)))
                code = hook.codes.pop(0) if hook.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.path = f"/hook/{secrets.token_hex(16)}"  # the secret part: searched for in every file afterwards
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> List[dict]:
        return [b for p, b in self.received if p == self.path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


# ---- the URL's reference, the bodies, delivery ------------------------------------------------------------------


def test_the_url_is_read_from_a_variable_or_a_private_file_never_given_itself(tmp_path):
    assert resolve("env:HOOK", {"HOOK": "https://x.example/a"}) == "https://x.example/a"
    with pytest.raises(WebhookError, match=r"\$HOOK is not set"):
        resolve("env:HOOK", {})
    with pytest.raises(WebhookError, match="holds the webhook URL itself"):
        resolve("https://x.example/a", {})
    f = tmp_path / "hook"
    f.write_text("\nhttps://x.example/b\n")
    f.chmod(0o644)
    with pytest.raises(WebhookError, match="may be read by others") as e:
        resolve(f"file:{f}", {})
    assert "x.example" not in e.value.message + e.value.hint
    f.chmod(0o600)
    assert resolve(f"file:{f}", {}) == "https://x.example/b"
    f.write_text("not a url\n")
    with pytest.raises(WebhookError, match="does not hold an http"):
        resolve(f"file:{f}", {})


def test_each_format_posts_the_body_its_bots_take(hook):
    message = {"event": "sweep_ended", "sweep": "s", "text": "danlu: sweep s ended"}
    said: List[str] = []
    for fmt in ("json", "slack", "feishu", "dingtalk"):
        assert deliver("env:H", fmt, message, said.append, environ={"H": hook.url})
    assert hook.bodies() == [
        message,
        {"text": message["text"]},
        {"msg_type": "text", "content": {"text": message["text"]}},
        {"msgtype": "text", "text": {"content": message["text"]}},
    ]
    assert said == []
    assert body("slack", message) == {"text": message["text"]}


def test_a_failed_delivery_is_retried_said_without_the_url_and_never_raised():
    flaky = Hook(codes=(500, 503))
    try:
        said: List[str] = []
        assert deliver("env:H", "json", {"text": "t"}, said.append, backoff_s=0.01, environ={"H": flaky.url})
        assert len(flaky.bodies()) == 3 and len(said) == 2
        assert "HTTP 500" in said[0] and "HTTP 503" in said[1]
    finally:
        flaky.close()
    gone = flaky.url  # the server is closed: nothing listens there now
    said = []
    assert not deliver("env:H", "json", {"text": "t"}, said.append, backoff_s=0.01, environ={"H": gone})
    assert len(said) == 3 and "after 3 tries" in said[-1]
    assert not any(flaky.path in s or gone in s for s in said)
    said = []
    assert not deliver("env:H", "json", {"text": "t"}, said.append, environ={})  # unset at send time
    assert said == ["notify: not sent: notify.url=env:H: $H is not set"]


# ---- on the test cluster ----------------------------------------------------------------------------------------

STEPS = 6
TINY = ("experiment=tiny_dpo", "cluster=testcluster", f"args.max_train_steps={STEPS}", "+args.pretrain_steps=5")


def _files_holding(root: Path, needle: bytes) -> List[str]:
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            try:
                if needle in p.read_bytes():
                    found.append(str(p))
            except OSError:
                continue
    return found


@pytest.mark.slurm
def test_a_failed_run_and_the_end_of_the_sweep_each_send_one_message(slurm_cluster, hook, tmp_path):
    env = private_env(tmp_path)
    url_file = tmp_path.parent / f"{tmp_path.name}.webhook"  # outside the folder searched for the URL below
    url_file.write_text(hook.url + "\n")
    url_file.chmod(0o600)
    done = danlu(
        "submit",
        *TINY,
        "-m",
        "args.crash_at_step=-1,3",
        f"notify.url=file:{url_file}",
        "notify.email=researcher@example.org",
        "--name",
        "hooked",
        "--json",
        env=env,
        check=True,
    )
    assert hook.url not in done.stderr + done.stdout
    array = json.loads(done.stdout)["runs"][0]["job_id"].split("_")[0]
    summary_job = re.search(r"summary job (\d+) runs once the jobs of hooked have ended", done.stderr).group(1)
    # Slurm's own mail: a failed task of the array, and the end of the summary job (that is, of the sweep)
    jobs = {
        j: subprocess.run(["scontrol", "show", "job", j], capture_output=True, text=True).stdout
        for j in (array, summary_job)
    }
    mail = {
        j: (re.search(r"MailUser=(\S+)", t).group(1), set(re.search(r"MailType=(\S+)", t).group(1).split(",")))
        for j, t in jobs.items()
    }
    assert mail == {
        array: ("researcher@example.org", {"FAIL", "ARRAY_TASKS"}),
        summary_job: ("researcher@example.org", {"END"}),
    }, jobs
    assert re.search(rf"Dependency=afterany:{array}(?:_\*)?[\s(]", jobs[summary_job]), jobs[summary_job]  # all tasks
    danlu("submit", *TINY, "args.crash_at_step=2", "--name", "quiet", env=env, check=True)  # notify unset

    assert [i["state"] for i in wait_status("quiet", env, timeout=600, poll=5)] == ["FAILED"]
    items = wait_status("hooked", env, timeout=600, poll=5)
    assert [i["state"] for i in items] == ["COMPLETED", "FAILED"], items
    deadline = time.monotonic() + 300  # the summary job starts once both jobs have left the queue
    while not any(b["event"] == "sweep_ended" for b in hook.bodies()) and time.monotonic() < deadline:
        time.sleep(2)
    got = hook.bodies()
    assert [(b["event"], b["sweep"]) for b in got] == [("run_failed", "hooked"), ("sweep_ended", "hooked")], got

    failure, summary = got
    assert failure["run"] == "hooked/1" and failure["exit_code"] != 0
    assert "RuntimeError: injected crash at step 3 on rank 0" in failure["reason"]
    status = {i["run"]: i for i in status_json("hooked", env=env)}
    assert failure["reason"] == status["hooked/1"]["reason"]  # the words `danlu status` uses
    assert 0 < len(failure["log_tail"]) <= 20 and any("injected crash" in ln for ln in failure["log_tail"])
    assert failure["text"].startswith("danlu: run hooked/1 of sweep hooked FAILED")

    assert summary["counts"] == {"COMPLETED": 1, "FAILED": 1} and summary["not_ended"] == 0
    assert summary["best_run"] == "hooked/0" and summary["metric"] == "loss"
    by_run = {r["run"]: r for r in summary["runs"]}
    assert by_run["hooked/0"]["steps"] == STEPS and "injected crash" in by_run["hooked/1"]["reason"]
    assert "best run: hooked/0" in summary["text"] and "FAILED: hooked/1: RuntimeError" in summary["text"]

    # the failure was sent by the job as it ended; the summary job did not send it again
    run_dir = Path(status["hooked/1"]["run_dir"])
    assert (run_dir / "logs" / "attempt-1" / "notified").exists()
    outputs = list((run_dir.parent / ".slurm").glob("notify-*.out"))
    assert len(outputs) == 1 and "notify: 1 message for hooked" in outputs[0].read_text()
    assert not list((tmp_path / "runs" / "quiet").rglob("notify*")), "a summary job for a sweep without notify"

    # the secret: in no script, pickle, log, result or the store (its journal too)
    assert _files_holding(tmp_path, hook.path.encode()) == []
    assert _files_holding(tmp_path, f"file:{url_file}".encode())  # the reference is what is kept

    dry = danlu("notify", "hooked", "--dry-run", env=env, check=True)
    assert [json.loads(ln)["event"] for ln in dry.stdout.splitlines()] == ["sweep_ended"]  # sent ones not again
    assert len(hook.bodies()) == 2


def test_a_webhook_variable_is_refused_where_slurm_keeps_job_environments(slurm_cluster, hook, tmp_path):
    """The test cluster keeps each job's environment (AccountingStoreFlags=job_env), as some sites do: a URL in a
    variable would travel into the accounting database with the job (sacct --env-vars), so env: is refused with
    and without --dry-run, nothing queued; file: is not, and its job's stored environment holds no URL. A token
    of env.pass_env set in the shell is warned about."""
    env = {**private_env(tmp_path), "DANLU_TEST_HOOK": hook.url, "HF_TOKEN": "hf_secret_token_42"}
    for dry in (["--dry-run"], []):
        done = danlu("submit", *TINY, "notify.url=env:DANLU_TEST_HOOK", "--name", "envhook", *dry, env=env)
        said = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr
        assert said[-2].startswith("error: notify.url=env:DANLU_TEST_HOOK would put the webhook URL into Slurm's")
        assert "AccountingStoreFlags=job_env" in said[-2] and said[-1].startswith("hint: keep the URL in a file")
        assert hook.url not in done.stderr + done.stdout
    assert status_json(env=env) == []
    url_file = tmp_path / "webhook"
    url_file.write_text(hook.url + "\n")
    url_file.chmod(0o600)
    env.pop("DANLU_TEST_HOOK")  # the URL in a file only
    done = danlu(
        "submit", *TINY, f"notify.url=file:{url_file}", "resources.extra_sbatch=[--hold]", "--name", "filehook",
        "--json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warning = [ln for ln in done.stderr.splitlines() if ln.startswith("warning: HF_TOKEN")]
    assert len(warning) == 1 and "kept in Slurm's records" in warning[0], done.stderr
    job = json.loads(done.stdout)["runs"][0]["job_id"]
    try:
        deadline = time.monotonic() + 60
        stored = ""
        while "SLURM_" not in stored and "PATH=" not in stored and time.monotonic() < deadline:
            stored = subprocess.run(
                ["sacct", "-j", job, "--env-vars", "-n"], capture_output=True, text=True
            ).stdout  # fmt: skip
            time.sleep(1)
        assert "PATH=" in stored, "the test cluster keeps no job environment"
        assert "hf_secret_token_42" in stored  # what the warning said: the shell's token went along
        assert hook.url not in stored and hook.path not in stored
    finally:
        subprocess.run(["scancel", job])
