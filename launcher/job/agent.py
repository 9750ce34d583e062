"""The node agent: what srun starts on every node (or every task) of a danlu job.

It is the callable submitit pickles; it runs through `python -m launcher.job` (submitit's job-side runner).
On each node it:
  * works out node rank, head address and rendezvous port, and fills them into $DANLU_COMMAND;
  * starts that command (accelerate launch / torchrun / the program) in its own process group;
  * writes the node's output to this restart's log dir (launcher/layout.py), one file per node and, where
    the launcher supports it, one per rank, plus its own lines (head node, port, command);
  * fails fast: a non-zero exit ends this task at once, and `srun --kill-on-bad-exit=1` then
    ends every other node's task, so surviving ranks never wait for a dead peer; when torch elastic
    stops a node's ranks after one of them failed, ranks still alive after FAILED_PEER_KILL_S are killed
    (torch elastic would give a rank blocked in a collective 30 s);
  * forwards Slurm's signals: the time-limit/preemption warning (requeue.signal) reaches every
    training process as SIGUSR1 (the workloads checkpoint and exit), SIGTERM as SIGTERM; after
    a warning, task 0 asks Slurm to requeue the job (up to requeue.max_requeues times).

Never import torch or accelerate here: the agent runs in danlu's own light interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Protocol, Tuple

from ..layout import RestartLayout, RunLayout, log_per_task
from .dispositions import HandlerWatch, catches
from .port import job_port
from .resume import newest_checkpoint, resume_dirs, with_python_path
from .timed_log import RankFiles, TimedLog
from .world import WorldWatch

# Tokens in $DANLU_COMMAND that only the node knows; the planner writes them. The agent imports nothing
# of danlu's login side (it starts on every node of every job: the fewer imports, the sooner training starts).
NODE_RANK, HEAD_ADDR, PORT, LOG_DIR = "@NODE_RANK@", "@HEAD_ADDR@", "@PORT@", "@LOG_DIR@"

# said at a requeue of a program whose progress nothing keeps (state/reasons.py reads it)
FROM_ZERO = "requeued to start again at step 0"
# a rank still alive this long after torch elastic began stopping the ranks of a failed node is killed
FAILED_PEER_KILL_S = 3.0
# after SIGTERM the program has the cluster's grace (KillWait / GraceTime, slurm.stop_grace) less this margin,
# in which the agent kills what is left, collects the logs and writes the result before Slurm's SIGKILL
STOP_MARGIN_S = 2.0

Child = subprocess.Popen[bytes]  # the program the agent started (its output read as bytes)
Say = Callable[[str], None]  # a line of the agent's own in this node's log


class Warn(Protocol):
    """Stop this task's ranks as for the time-limit warning (`peer`: another task was stopped by a signal)."""

    def __call__(self, why: str, peer: bool = False) -> None: ...


# before the ranks' first line the hang watchdog waits at least this long (imports, data, rendezvous)
STARTUP_SILENCE_S = 300.0


@dataclass
class NodeAgent:
    run_id: str  # "" in the one agent all tasks of an array share: each task's run is DANLU_RUN_ID
    launch_kind: str
    procs_per_node: int
    tasks_per_node: int
    max_requeues: int
    requeue_signal: str = "USR2"
    checkpoint_wait_s: float = 60.0  # after a time-limit/preemption warning, how long ranks may take to checkpoint
    grace_s: float = 120.0  # warn the ranks this long before the time limit (requeue.grace_s)
    stop_grace_s: float = 30.0  # SIGTERM to SIGKILL on this cluster (read at submit; Slurm's default KillWait)
    hang_timeout_s: float = 0.0  # no line from any training process of this node for this long: hung (0: never)
    keep_progress: bool = False  # a LightningCLI run: resume it from the newest checkpoint (job/resume.py)
    progress_lost: bool = False  # a program with no checkpoint danlu knows of: a requeue restarts it from step 0

    # ---- environment -------------------------------------------------------------------------
    def _ids(self) -> Dict[str, int]:
        from submitit import JobEnvironment

        env = JobEnvironment()
        return dict(
            node=env.node, nodes=env.num_nodes, rank=env.global_rank, local_rank=env.local_rank, ntasks=env.num_tasks
        )

    def __call__(self) -> int:
        _become_subreaper()  # ranks whose launcher died are re-parented here, so none is ever left behind
        ids = self._ids()
        attempt = int(os.environ.get("DANLU_ATTEMPT", "1"))
        restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        run_files = RunLayout(Path(os.environ["DANLU_RUN_DIR"]))
        for folder in run_files.dirs():  # every node's agent: whichever starts first
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = run_files.attempt(attempt)
        logs = files.restart(restart)
        logs.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tag = logs.tag(log_per_task(self.launch_kind, self.tasks_per_node), ids["rank"], ids["node"])
        head = os.environ.get("DANLU_HEAD_ADDR", "127.0.0.1")
        port = job_port()
        rank_logs = logs.launcher_logs(tag)
        subst = {NODE_RANK: str(ids["node"]), HEAD_ADDR: head, PORT: str(port), LOG_DIR: str(rank_logs)}
        argv = [_fill(a, subst) for a in shlex.split(os.environ["DANLU_COMMAND"])]
        node_name = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        self._node_name = node_name
        self._tag = tag

        env = dict(os.environ)
        env.update(MASTER_ADDR=head, MASTER_PORT=str(port), NODE_RANK=str(ids["node"]), PYTHONUNBUFFERED="1")
        if not _gpu_driver():
            # without it accelerate (>=1.0) on a node without GPUs gives every rank DistributedType.NO: N copies
            env.setdefault("ACCELERATE_USE_CPU", "true")
        self._world = (
            ids["ntasks"] if self.launch_kind in ("lightning", "python") else ids["nodes"] * self.procs_per_node
        )
        if self.launch_kind in ("lightning", "python"):
            env.update(
                RANK=str(ids["rank"]),
                WORLD_SIZE=str(ids["ntasks"]),
                LOCAL_RANK=str(ids["local_rank"]),
                LOCAL_WORLD_SIZE=str(self.tasks_per_node),
                GROUP_RANK=str(ids["node"]),
            )

        agent_log = logs.agent_log(tag)
        # unbuffered: the signal handlers say what they do, and may interrupt the main thread inside say(); a
        # buffered file (or print) entered twice raises "reentrant call" and would end the agent
        with open(agent_log, "ab", buffering=0) as alog, TimedLog(logs.log(tag)) as out:

            def say(msg: str) -> None:
                now = time.time()  # milliseconds: a failure's seconds across nodes are read from these lines
                line = (
                    f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} "
                    f"[danlu agent {tag} {node_name}] {msg}\n"
                )
                data = line.encode(errors="replace")
                for write in (alog.write, lambda b: os.write(sys.stderr.fileno(), b)):
                    try:  # a handler may run after the log was closed (a signal during the requeue): never fatal
                        write(data)
                    except (OSError, ValueError):
                        pass

            say(
                f"run {self.run_id or os.environ.get('DANLU_RUN_ID', '?')} attempt {attempt} restart {restart}: "
                f"node {ids['node']}/{ids['nodes']} task {ids['rank']}/{ids['ntasks']} head {head} port {port}"
            )
            if self.keep_progress:
                argv = self._resume(argv, run_files, attempt, ids["rank"] == 0, logs, say)
                with_python_path(env)
            say("command: " + shlex.join(argv))
            say("launcher: " + _describe_executable(argv[0], env.get("PATH")))
            ranks = RankFiles(rank_logs, logs.rank_log, ids["node"] * self.procs_per_node)
            try:
                code = self._run(argv, env, out, say, logs)
            finally:
                ranks.close()
            if ids["rank"] == 0 and not self._interrupted:
                outside = self._stopped_from_outside(code, logs, ids["ntasks"])
                if outside:
                    say(f"{outside}: this start did not complete; requeueing it")
                    self._interrupted = True
            if ids["rank"] == 0:
                files.write_result(
                    {"exit_code": code, "ended": time.time(), "restart": restart, "interrupted": self._interrupted}
                )
            say(f"exit code {code}" if not self._peer_failed else f"exit code 0 (launcher {code}; another task failed)")
            if self._peer_failed:
                pass  # the task that failed says how the job ended; srun ends the step when it exits
            elif self._interrupted or self._stopped_by:
                logs.stopped(tag).write_text(f"{code}\n")  # this task's ranks are done: shared run dir barrier
            elif code == 0:
                logs.finished(tag).write_text("0\n")  # ended by itself: a late warning on another node is ignored
            else:
                logs.failed(tag).write_text(f"{code}\n")  # failed first: what the other nodes see next is its doing
        requeued = (
            self._interrupted
            and ids["rank"] == 0
            and self._requeue_when_all_stopped(restart, logs, ids["ntasks"], agent_log)
        )
        if (self._interrupted or self._stopped_by) and (requeued or ids["rank"] != 0):
            # stopped by a signal, whatever the launcher's own exit code: a non-zero exit here would make srun kill
            # the other nodes' tasks while they may still be writing their checkpoint (the tasks that were not
            # signalled stop their ranks themselves on this task's `stopped-*` file, _watch_peers). Task 0, or the
            # task that failed first, says how the job ended. (srun's kill would also leave slurmctld a step
            # signal to retry, which then hit the requeued job's next start: seen on 22.05.)
            return 0
        if self._peer_failed:
            return 0  # not a second failure: a non-zero exit would make srun stop the failed task mid-report
        if self._interrupted and code == 0:
            code = 1  # stopped early and not requeued (requeue.max_requeues): the run did not complete
        if code != 0:
            # a non-zero exit of any task makes srun end the whole step (--kill-on-bad-exit)
            sys.stdout.flush()
            os._exit(code)
        return code

    def _resume(
        self, argv: List[str], run: RunLayout, attempt: int, first_task: bool, logs: RestartLayout, say: Say
    ) -> List[str]:
        """argv with `--ckpt_path` of the newest checkpoint of the run, if it has one; task 0 records which."""
        found = newest_checkpoint(run.stop_checkpoint, resume_dirs(run.lightning_config(attempt)))
        if found is None:
            say("no checkpoint of this run yet: training starts at step 0")
        else:
            at = f" (step {found['step']})" if found.get("step") is not None else ""
            say(f"resuming from {found['what']}{at}: {found['path']}")
        if first_task:
            logs.resumed_from.write_text(json.dumps(found))
        return argv if found is None else argv + [f"--ckpt_path={found['path']}"]

    # ---- the child ---------------------------------------------------------------------------
    _interrupted = False
    _preempted = False  # the warning came with the job selected for preemption (Slurm requeues it)
    _stopped_by: Optional[str] = None  # the first stop signal (SIGTERM/SIGINT) Slurm sent this task
    _kill_at: float = 0.0  # when what is left of the program is SIGKILLed after that signal
    _world: int = 1  # the planned world size (ranks of the whole job)

    def _run(
        self,
        argv: List[str],
        env: Dict[str, str],
        out: TimedLog,
        say: Say,
        logs: RestartLayout,
    ) -> int:
        warn_sig = getattr(signal, f"SIG{self.requeue_signal}")
        # Slurm delivers --signal to every process of the step. The training processes inherit an ignored warning
        # signal and an ignored SIGUSR1 (a rank without a handler yet never dies of it; Lightning then keeps its
        # auto-requeue off): the agent alone acts on the warning and tells each rank at the right time.
        signal.signal(warn_sig, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        try:
            child = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
        except FileNotFoundError as e:
            say(f"cannot start {argv[0]!r}: {e}")
            return 127
        end = _job_end_time() if self.grace_s > 0 else None
        handlers = HandlerWatch(lambda: self._rank_pids(child), lambda: child.poll() is None)
        local = self.procs_per_node if self.launch_kind in ("accelerate", "torchrun") else 1
        world = (
            WorldWatch(lambda: self._rank_pids(child), lambda: child.poll() is None, local)
            if self._world > 1 and self.launch_kind != "python"
            else None
        )

        def warn(why: str, peer: bool = False) -> None:
            if self._interrupted:
                return
            ranks = self._rank_pids(child)
            expected = self.procs_per_node if self.launch_kind in ("accelerate", "torchrun") else 1
            done_elsewhere = sorted(p.name[len("finished-") :] for p in logs.root.glob("finished-*"))
            sig = handlers.checkpoint_signal(ranks) if ranks else None
            if peer and ranks and child.poll() is None and not done_elsewhere:
                # the ranks' peers are gone: they cannot finish, whatever their handlers say (ranks breaking in a
                # collective put them back as they exit); what still runs after the checkpoint wait is killed
                sig = sig or signal.SIGTERM
                threading.Thread(
                    target=_kill_later, args=(child, max(5.0, self.checkpoint_wait_s)), daemon=True
                ).start()
            elif child.poll() is not None or len(ranks) < expected or done_elsewhere or sig is None:
                # ranks end one by one only when the program is finishing (a failure ends the job at once), and a
                # program that put its signal handlers back has ended its training: nothing to checkpoint, no requeue
                why_done = (
                    f"{expected - len(ranks)} of {expected} {_processes(expected)} here have ended"
                    if len(ranks) < expected or child.poll() is not None
                    else "its training processes have put back their signal handlers"
                )
                say(
                    f"{why}: ignored, the program is finishing ({why_done}"
                    + (f"; {', '.join(done_elsewhere)} ended" if done_elsewhere else "")
                    + ")"
                )
                return
            self._interrupted = True
            how = (
                "checkpoint and exit for requeue"
                if sig == signal.SIGUSR1
                else "they handle SIGTERM, not SIGUSR1"
                if handlers.ever_caught
                else "they have no checkpoint signal handler; they resume from their last checkpoint"
            )
            say(
                f"{why}: sending {sig.name} to each of the {len(ranks)} {_processes(len(ranks))} "
                f"(pids {' '.join(map(str, ranks))}): {how}"
            )
            for pid in ranks:  # each rank itself: launchers such as torch elastic do not forward SIGUSR1
                _kill(pid, sig)

        if end is not None:
            # Slurm may deliver --signal up to a minute early; the agent keeps its own, exact clock
            timer = threading.Timer(
                max(0.0, end - self.grace_s - time.time()), warn, args=(f"time limit in {self.grace_s:.0f}s",)
            )
            timer.daemon = True
            timer.start()

        def early_warning(name: str, left: float) -> None:
            if _job_state()[1]:
                self._preempted = True
                warn(f"received {name}: the job is being preempted (its PreemptTime is set)")
                return
            # every node's agent acts at the same moment, end - grace, on its own clock: Slurm delivers the signal to
            # the nodes at different times, and ranks told seconds apart may disagree (Lightning broadcasts inside
            # its SIGTERM handler)
            say(
                f"received {name} {left:.0f}s before the time limit (Slurm signals early): "
                f"checkpointing {self.grace_s:.0f}s before the end instead, with the other nodes"
            )

        def forward(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            if signum == warn_sig:
                left = end - time.time() if end is not None else None
                if left is not None and left > self.grace_s - 2:
                    # long before the time limit: a preemption with a GraceTime (PreemptParameters=send_user_signal),
                    # or Slurm's early delivery of the time-limit warning; Slurm is asked which, off the handler
                    threading.Thread(target=early_warning, args=(name, left), daemon=True).start()
                    return
                warn(f"received {name} (time limit or preemption)")
            elif self._peer_failed or self._end_for_failed_peer(child, logs, say, f"received {name}"):
                return  # srun stopping the step after another task failed: nothing to checkpoint
            else:
                first = self._stopped_by is None
                self._stopped_by = self._stopped_by or name
                ranks = self._rank_pids(child)
                kill_in = max(1.0, self.stop_grace_s - STOP_MARGIN_S)
                # a program with a checkpoint signal gets that one: it stops every rank at an agreed step, where
                # a handler on SIGTERM may run collectives inside the handler (Lightning's, which deadlocks DDP)
                own = any(catches(p, signal.SIGUSR1) for p in ranks)
                send = signal.SIGUSR1 if own else signum
                say(
                    f"received {name}: "
                    + (
                        f"sending SIGUSR1 (their checkpoint signal) to each of the {len(ranks)}"
                        if own
                        else f"forwarding it to each of the {len(ranks)}"
                    )
                    + f" {_processes(len(ranks))}"
                    + (
                        f"; SIGKILL for what is left in {kill_in:.0f}s (the cluster gives {self.stop_grace_s:.0f}s)"
                        if first
                        else ""
                    )
                )
                for pid in ranks or [child.pid]:
                    _kill(pid, send)
                if first:
                    self._kill_at = time.time() + kill_in
                    threading.Thread(target=_kill_later, args=(child, kill_in), daemon=True).start()

        for sig in {warn_sig, signal.SIGTERM, signal.SIGINT, signal.SIGCONT} - {signal.SIGCONT}:
            signal.signal(sig, forward)
        self._last_output = time.time()
        if self.hang_timeout_s > 0:
            threading.Thread(target=self._watch_silence, args=(child, say), daemon=True).start()
        threading.Thread(target=self._watch_peers, args=(child, logs, warn, say), daemon=True).start()
        assert child.stdout is not None
        reaping = signalled = False
        stdout = child.stdout
        for chunk in iter(stdout.readline, b""):
            self._last_output = time.time()
            if not self._ranks_spoke and (
                self.launch_kind not in ("accelerate", "torchrun")
                or self.procs_per_node == 1
                or _LOCAL_LINE.match(chunk)
            ):
                self._ranks_spoke = True  # the hang clock runs from the ranks' first line (imports can be slow)
            out.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            if _ELASTIC_SIGNALLED.search(chunk):
                signalled = True  # Slurm's signal reached the launcher: what it closes next is no failure
            if (
                not reaping
                and not signalled
                and not self._interrupted
                and not self._stopped_by
                and _ELASTIC_CLOSING.search(chunk)
            ):
                # (signalled: Slurm's signal reached this agent too; its handler stops the ranks, with the grace)
                # torch elastic stops this node's other ranks after one failed, and waits 30 s before SIGKILL;
                # a rank blocked in a collective whose peer died (NCCL) never ends by itself meanwhile
                reaping = True
                say(
                    f"the launcher is stopping this node's ranks after a failure: SIGKILL for any still running "
                    f"in {FAILED_PEER_KILL_S:.0f}s (not torch elastic's 30s)"
                )
                if not self._peer_failed and not logs.failed_count():
                    # on record now, not when the launcher has exited: the other nodes end their ranks at once
                    # (_watch_peers) rather than wait for them to break in a collective, or for srun
                    logs.failed(self._tag).write_text("launcher reported a failed rank\n")
                threading.Thread(
                    target=_kill_ranks_later,
                    daemon=True,
                    args=(child, lambda: self._interrupted or bool(self._stopped_by)),
                ).start()
        code = child.wait()
        handlers.close()
        if world is not None:
            world.close()
            alone = world.alone()
            if code == 0 and alone and not self._interrupted and not self._stopped_by:
                line = (
                    f"{len(alone)} of {len(world.seen)} {_processes(len(world.seen))} on this node trained alone, "
                    f"not in one world of {self._world} (no process group: pids {' '.join(map(str, alone))}); "
                    f"the run is not complete"
                )
                say(line)
                print(f"[danlu agent] {line}", file=sys.stderr, flush=True)  # Slurm's output: the run's reason
                code = 3
        if self._stopped_by and self._kill_at:
            # the launcher may go first: its ranks keep the rest of the cluster's grace to finish a checkpoint
            _wait_descendants_gone(timeout=max(0.0, self._kill_at - time.time()))
        if self._interrupted:
            # the launcher may end before its ranks have written their checkpoint: wait for them
            left = _wait_descendants_gone(timeout=max(5.0, self.checkpoint_wait_s))
            if left:
                said = "process" if len(left) == 1 else "processes"
                say(f"{len(left)} {said} still running {self.checkpoint_wait_s:.0f}s after the signal: killed")
        _kill_program(child)  # nothing this agent started outlives the launcher
        if code < 0:
            code = 128 - code
        if self._peer_failed:
            say(f"the launcher exited with code {code} after another task failed (this task did not fail)")
        elif self._interrupted:
            say(f"the training processes stopped for the time limit/preemption (launcher exit {code})")
        elif code != 0 and self._stopped_by:
            # a consequence, not the cause: Slurm (a failed peer, scancel, the time limit) stopped this task
            say(
                f"the launcher exited with code {code} after {self._stopped_by} "
                "(this task was stopped; it did not fail first)"
            )
        elif code != 0:
            # this task failed first (as far as it knows): say so, so the log shows where the job broke
            say(f"the launcher exited with code {code}: ending the job (the other nodes are stopped by srun)")
        return code

    _last_output: float = 0.0
    _ranks_spoke = False
    _node_name: str = ""

    def _watch_silence(self, child: Child, say: Say) -> None:
        """A rank blocked in a collective whose peer hangs never ends by itself (gloo/NCCL wait up to 30 min):
        when no training process of this node has written a line for hang_timeout_s, end the job as hung."""
        while child.poll() is None:
            time.sleep(1.0)
            quiet = time.time() - self._last_output
            limit = self.hang_timeout_s if self._ranks_spoke else max(self.hang_timeout_s, STARTUP_SILENCE_S)
            if quiet < limit or self._interrupted or self._stopped_by:
                continue
            line = (
                f"hung: no output from the training processes on {self._node_name} "
                f"for {quiet:.0f}s (launch.hang_timeout_s={self.hang_timeout_s:.0f}); ending the job"
            )
            say(line)
            print(f"[danlu agent] {line}", file=sys.stderr, flush=True)  # Slurm's output: the run's reason
            _kill_program(child)
            return

    def _watch_peers(self, child: Child, logs: RestartLayout, warn: Warn, say: Say) -> None:
        """Another task stopped for a signal this one was not sent (its `stopped-*` file): stop this task's ranks
        as for the time limit, checkpoint and all, rather than leave them waiting for their peers in a collective
        or have srun kill them. Task 0 then asks Slurm to requeue the job (unless Slurm is ending it)."""
        while child.poll() is None and not self._interrupted and not self._stopped_by:
            if self._end_for_failed_peer(child, logs, say):
                return
            if logs.stopped_count():
                self._peer_stopped = True
                warn("another task's ranks were stopped by a signal", peer=True)
                return
            time.sleep(0.5)

    def _end_for_failed_peer(
        self,
        child: Child,
        logs: RestartLayout,
        say: Say,
        why: str = "",
    ) -> bool:
        """Another task failed first (its `failed-*` file): the job is failing, so nothing here is worth a checkpoint
        or a wait (the ranks would only break in their next collective). End this task's ranks at once; the task
        that failed reports why, and srun ends the step when it exits."""
        if self._stopped_by or self._interrupted:
            return False
        failed = [t for t in logs.failed_tags() if t != self._tag]
        if not failed:
            return False
        self._peer_failed = True
        say((f"{why}: " if why else "") + f"{failed[0]} failed: ending this task's training processes now")
        _kill_program(child)
        return True

    _peer_stopped = False
    _peer_failed = False  # another task failed first: this one ended its ranks (_watch_peers)
    _tag = ""
    _slurm_keeps_it = False  # _stopped_from_outside found the job RUNNING and not being preempted

    def _rank_pids(self, child: Child) -> List[int]:
        """The training processes: a per-node launcher's children (torch elastic starts each rank in a session of
        its own), else the program the agent started (one per task). Never the process group: it holds data
        loader workers, which SIGUSR1 would kill."""
        if child.poll() is not None:
            return []
        if self.launch_kind in ("accelerate", "torchrun"):
            return _children(child.pid)
        return [child.pid]

    def _stopped_from_outside(self, code: int, logs: RestartLayout, ntasks: int) -> Optional[str]:
        """Task 0, at the end of a start that was not stopped for the time limit: did a signal stop it (here, or on
        another node whose ranks then stopped or broke these) while Slurm is not ending the job? A SIGTERM that is
        not a cancel, preemption, time limit or node failure — e.g. slurmctld's retry of a kill meant for this
        job's earlier start, delivered to a node that died and came back, which hits the new start's step — must
        neither end the run COMPLETED (the ranks checkpointed and exited 0) nor FAILED: it is requeued."""
        if not self._stopped_by:
            if ntasks <= 1:
                return None
            # every rank leaves at one agreed step: wait a little for the others' outcome. (A failure is not
            # delayed: it ends the job at once, unless another task's stop is already on record.)
            end = time.time() + (5.0 if code == 0 else 0.0)
            while logs.ended_count() < ntasks - 1 and logs.stopped_count() == 0 and time.time() < end:
                time.sleep(0.2)
            if logs.stopped_count() == 0:
                return None
        if logs.failed_count():
            return None  # a task that failed first writes its `failed-*` before srun stops the others
        time.sleep(1.0)  # a shared file system may show it a moment later
        if logs.failed_count():
            return None
        state, preempting = _job_state()
        if state == "RUNNING" and preempting and not _slurm_requeues_preempted_jobs():
            self._preempted = True
            return "the job is being preempted within its partition's GraceTime, which this Slurm ends for good"
        if state != "RUNNING" or preempting:
            return None  # Slurm is ending it (cancelled, preempted, timed out, node failure), or cannot say
        self._slurm_keeps_it = True  # asked once: the requeue below need not ask again
        who = (
            f"{self._stopped_by} reached this task"
            if self._stopped_by
            else "another task's ranks were stopped by a signal"
        )
        return f"{who} while Slurm kept the job running (no cancel, preemption, time limit or node failure)"

    def _requeue_when_all_stopped(self, restart: int, logs: RestartLayout, ntasks: int, say_file: Path) -> bool:
        """Nodes agree before the requeue: task 0 waits until every task's ranks have stopped (their `stopped-*`
        or `finished-*` files in the shared run directory), at most the checkpoint wait, then asks Slurm once."""
        job = os.environ.get("SLURM_JOB_ID")
        end = time.time() + max(5.0, self.checkpoint_wait_s)
        while logs.ended_count() < ntasks and time.time() < end:
            time.sleep(0.2)
        with open(say_file, "a") as log:
            stopped = logs.ended_count()
            log.write(
                f"{stopped} of {ntasks} task{'' if ntasks == 1 else 's'} stopped for the requeue"
                + ("" if stopped >= ntasks else " (not waiting longer)")
                + "\n"
            )
            if not job:
                return False
            if self._preempted:
                if _slurm_requeues_preempted_jobs():
                    # a second requeue on top of Slurm's would start the run once more after it completes
                    log.write("not requeued: Slurm requeues (or ends) the job it preempts\n")
                    return False
            elif (self._peer_stopped or self._stopped_by) and not self._slurm_keeps_it:
                state, preempting = _job_state()
                if state != "RUNNING" or preempting:
                    log.write(
                        f"not requeued: Slurm is ending the job itself (state {state}"
                        + (", selected for preemption" if preempting else "")
                        + ")\n"
                    )
                    return False
            if restart >= self.max_requeues:
                line = (
                    f"not requeued: {restart} requeue{'' if restart == 1 else 's'} already "
                    f"(requeue.max_requeues={self.max_requeues})"
                )
                log.write(line + "\n")
                print(f"[danlu agent] {line}", file=sys.stderr, flush=True)  # Slurm's output: the run's reason
                return False
            # Slurm stops this job as soon as it requeues it: its SIGTERM is the consequence, not news
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            done = _slurm(["scontrol", "requeue", job])
            ok = done is not None and done.returncode == 0
            log.write(f"requeue of job {job}: {'ok' if ok else (done.stderr.strip() if done else 'no scontrol')}\n")
            if ok and self.progress_lost:
                line = (
                    f"{FROM_ZERO}: the program keeps no checkpoint danlu knows of (no output_arg, no LightningCLI fit)"
                )
                log.write(line + "\n")
                print(f"[danlu agent] {line}", file=sys.stderr, flush=True)  # Slurm's output: the run's reason
            return ok


def _processes(n: int) -> str:
    """The noun for n training processes, singular for one (the job side counts without launcher/words.py)."""
    return "training process" if n == 1 else "training processes"


def _describe_executable(name: str, path: Optional[str]) -> str:
    """Which file `name` runs (the job's PATH, e.g. an activated envs/NAME/.venv) and, for a script, its interpreter."""
    found = shutil.which(name, path=path)
    if found is None:
        return f"{name} (not found on PATH)"
    try:
        with open(found, "rb") as f:
            first = f.readline(256)
    except OSError:
        return found
    if first.startswith(b"#!"):
        return f"{found} (interpreter {first[2:].decode(errors='replace').strip()})"
    return found


def _fill(arg: str, subst: Dict[str, str]) -> str:
    for token, value in subst.items():
        if token in arg:
            arg = arg.replace(token, value)
    return arg


def _gpu_driver() -> bool:
    """A GPU driver on this node (NVIDIA's lists its GPUs under /proc; ROCm has /dev/kfd)."""
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become this process's children (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _descendants(root: int) -> List[int]:
    """Live descendants of `root` (children, their children, ...)."""
    children: Dict[int, List[int]] = {}
    for pid, parent, _ in _live_processes():
        children.setdefault(parent, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _wait_descendants_gone(timeout: float) -> List[int]:
    """Wait until this agent has no live descendant left; those still alive after `timeout`."""
    end = time.time() + timeout
    while True:
        left = _descendants(os.getpid())
        if not left or time.time() >= end:
            return left
        time.sleep(0.2)


def _kill_descendants() -> None:
    for pid in _descendants(os.getpid()):
        _kill(pid, signal.SIGKILL)


def _kill_program(child: Child) -> None:
    """SIGKILL the launcher's process group and every descendant of this agent (ranks in sessions of their own)."""
    _killpg(child.pid, signal.SIGKILL)
    _kill_descendants()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# a Slurm command's failure that a moment later may not recur (a busy or restarting controller)
_TRANSIENT = (
    "timed out",
    "Timed out",
    "Unable to contact",
    "Zero Bytes",
    "Connection refused",
    "Connection reset",
    "temporarily unavailable",
    "Resource temporarily",
)


def _slurm(cmd: List[str], tries: int = 3) -> Optional["subprocess.CompletedProcess[str]"]:
    """Run a Slurm command from inside the job; a transient failure is tried again (1 s, then 2 s later), so a busy
    controller never ends the job. None when the command cannot run at all; else its last outcome."""
    if shutil.which(cmd[0]) is None:
        return None
    done = None
    for attempt in range(tries):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired as e:
            done = subprocess.CompletedProcess(cmd, 124, "", f"{cmd[0]}: timed out after {e.timeout:.0f}s")
        except OSError:
            return None
        if done.returncode == 0 or not any(m in done.stderr for m in _TRANSIENT):
            return done
        if attempt + 1 < tries:
            time.sleep(attempt + 1.0)
    return done


def _slurm_requeues_preempted_jobs() -> bool:
    """Whether Slurm itself requeues a job selected for preemption (PreemptMode=REQUEUE, with a GraceTime) that ends
    before its grace is over. Seen on the test clusters: 24.11 and 26.05 do, 22.05 ends it for good (FAILED). Read
    from `scontrol --version` (no call to slurmctld); unknown: no, and the agent requeues it."""
    done = _slurm(["scontrol", "--version"], tries=1)
    found = re.search(r"(\d+)\.\d+", done.stdout) if done is not None and done.returncode == 0 else None
    return found is not None and int(found.group(1)) >= 24


def _job_end_time() -> Optional[float]:
    """When Slurm will end this job (its time limit): $DANLU_JOB_END (epoch seconds), which the batch script set
    for every task of the job without asking Slurm (templates/discovery.sh.j2); one squeue call only where no
    batch script did (an older script). None if unknown."""
    text = os.environ.get("DANLU_JOB_END")
    if text is not None:
        return float(text) if text.strip().isdigit() else None
    job = os.environ.get("SLURM_JOB_ID")
    done = _slurm(["squeue", "-h", "-j", job, "-o", "%e"]) if job else None
    try:
        return time.mktime(time.strptime(done.stdout.strip(), "%Y-%m-%dT%H:%M:%S")) if done else None
    except (ValueError, OverflowError):
        return None


def _job_state() -> Tuple[Optional[str], bool]:
    """The job's state as slurmctld has it now (one scontrol call), and whether it has been selected for
    preemption (its PreemptTime is set: during a partition's GraceTime it still shows RUNNING); None if unknown."""
    job = os.environ.get("SLURM_JOB_ID")
    out = _slurm(["scontrol", "show", "job", "-o", job]) if job else None
    if out is None:
        return None, False
    state = re.search(r"\bJobState=(\S+)", out.stdout)
    preempt = re.search(r"\bPreemptTime=(\S+)", out.stdout)
    return (
        state.group(1) if state and out.returncode == 0 else None,
        bool(preempt and preempt.group(1) not in ("None", "Unknown")),
    )


def _live_processes() -> Iterator[Tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie, from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            yield int(stat.parent.name), int(fields[1]), int(fields[2])


# a line of a rank copied by torch elastic into the launcher's output (--tee): `[default<local rank>]:`
_LOCAL_LINE = re.compile(rb"^\[default\d+\]:")
# torch elastic (accelerate launch --multi_gpu, torchrun) logs this when it starts stopping its workers
_ELASTIC_CLOSING = re.compile(rb"Sending process \d+ closing signal SIG|Closing process \d+ via signal SIG")
# ... and this first when a signal (Slurm's SIGTERM) made it stop them
_ELASTIC_SIGNALLED = re.compile(rb"Received \d+ death signal")


def _kill_ranks_later(child: Child, stopped: Callable[[], bool]) -> None:
    """SIGKILL the launcher's ranks still alive after the grace (torch elastic starts each rank in a
    session of its own: the rank's whole group goes). The launcher itself is left to notice, report
    which rank failed first, and exit with its own code. Not when the agent was told to stop meanwhile:
    Slurm's SIGTERM reaches the launcher too, which may say it is closing its ranks before the agent's own
    handler has run; the ranks then have the cluster's grace to checkpoint (the stop's own timer)."""
    end = time.time() + FAILED_PEER_KILL_S
    while time.time() < end:
        if child.poll() is not None or not _children(child.pid) or stopped():
            return
        time.sleep(0.2)
    if child.poll() is None and not stopped():
        for pid in _children(child.pid):
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _children(ppid: int) -> List[int]:
    """Live (non-zombie) child processes of `ppid`."""
    return [pid for pid, parent, _ in _live_processes() if parent == ppid]


def _kill_later(child: Child, after: float) -> None:
    """SIGKILL whatever of the program still runs `after` seconds from now (its group and every descendant)."""
    try:
        child.wait(timeout=after)
    except subprocess.TimeoutExpired:
        _kill_program(child)
    _kill_descendants()
