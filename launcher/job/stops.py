"""The node agent's signal handlers for one start: they read the ranks, ask job/stop_policy.py what to do, and do it.

Slurm delivers --signal to every process of the step. The training processes inherit an ignored warning signal and
an ignored SIGUSR1 (a rank without a handler yet never dies of it; Lightning then keeps its auto-requeue off): the
agent alone acts on the warning and tells each rank at the right time.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import List, Optional

from ..layout import RestartLayout
from ..node_agent import NodeAgent
from . import slurm_calls
from .agent_log import Say
from .dispositions import HandlerWatch, catches
from .node_env import rank_pids
from .peers import end_for_failed_peer
from .proctree import Child, kill, kill_later
from .start_state import StartState
from .stop_policy import RanksNow, early_line, is_early, on_stop, on_warning


def warning_signal(agent: NodeAgent) -> signal.Signals:
    """The signal Slurm sends before the time limit or at a preemption (requeue.signal)."""
    return signal.Signals(getattr(signal, f"SIG{agent.requeue_signal}"))


def ignore_warnings(agent: NodeAgent) -> None:
    """Before the program starts: it inherits the warning signal and SIGUSR1 ignored."""
    signal.signal(warning_signal(agent), signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


class StopHandlers:
    """Acts on Slurm's warning and stop signals, and on another task's stop (job/peers.py calls `warn`)."""

    def __init__(
        self, agent: NodeAgent, state: StartState, child: Child, logs: RestartLayout, say: Say, end: Optional[float]
    ) -> None:
        self.agent, self.state, self.child, self.logs, self.say, self.end = agent, state, child, logs, say, end
        self.handlers = HandlerWatch(self.ranks, lambda: child.poll() is None)

    def ranks(self) -> List[int]:
        return rank_pids(self.agent, self.child)

    def install(self) -> None:
        """Handle the warning, SIGTERM and SIGINT; start the agent's own clock for the time-limit warning (Slurm may
        deliver --signal up to a minute early)."""
        for sig in (warning_signal(self.agent), signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.forward)
        if self.end is not None:
            why = f"time limit in {self.agent.grace_s:.0f}s"
            timer = threading.Timer(max(0.0, self.end - self.agent.grace_s - time.time()), self.warn, args=(why,))
            timer.daemon = True
            timer.start()

    def warn(self, why: str, peer: bool = False) -> None:
        """Tell the ranks to checkpoint and exit for a requeue, unless the program is finishing."""
        if self.state.interrupted:
            return
        ranks = self.ranks()
        sig = self.handlers.checkpoint_signal(ranks) if ranks else None
        now = RanksNow(
            ranks=ranks,
            expected=self.agent.local_ranks,
            running=self.child.poll() is None,
            done_elsewhere=self.logs.finished_tags(),
            checkpoint_signal=sig,
            ever_caught=self.handlers.ever_caught,
        )
        action = on_warning(why, peer, now, self.agent.checkpoint_wait_s)
        if action.send is None:
            self.say(action.line)
            return
        if action.kill_after_s is not None:
            threading.Thread(target=kill_later, args=(self.child, action.kill_after_s), daemon=True).start()
        self.state.interrupted = True
        self.say(action.line)
        for pid in ranks:  # each rank itself: launchers such as torch elastic do not forward SIGUSR1
            kill(pid, action.send)

    def forward(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.state.ending:
            # the watchdog is recording the hung ranks' stacks and ends them within seconds: the job is failing
            self.say(f"received {name}: ignored, the agent is ending the training processes ({self.state.ending})")
            return
        if signum == warning_signal(self.agent):
            left = self.end - time.time() if self.end is not None else None
            if left is not None and is_early(left, self.agent.grace_s):
                # Slurm is asked whether this is a preemption, off the handler
                threading.Thread(target=self._early_warning, args=(name, left), daemon=True).start()
                return
            self.warn(f"received {name} (time limit or preemption)")
        elif self.state.peer_failed or end_for_failed_peer(
            self.child, self.logs, self.state, self.say, f"received {name}"
        ):
            return  # srun stopping the step after another task failed: nothing to checkpoint
        else:
            self._stop(name, signum)

    def _early_warning(self, name: str, left: float) -> None:
        if slurm_calls.job_state()[1]:
            self.state.preempted = True
            self.warn(f"received {name}: the job is being preempted (its PreemptTime is set)")
            return
        self.say(early_line(name, left, self.agent.grace_s))

    def _stop(self, name: str, signum: int) -> None:
        first = self.state.stopped_by is None
        self.state.stopped_by = self.state.stopped_by or name
        ranks = self.ranks()
        own = any(catches(p, signal.SIGUSR1) for p in ranks)
        action = on_stop(name, signum, first, own, len(ranks), self.agent.stop_grace_s)
        self.say(action.line)
        assert action.send is not None
        for pid in ranks or [self.child.pid]:
            kill(pid, action.send)
        if action.kill_after_s is not None:
            self.state.kill_at = time.time() + action.kill_after_s
            threading.Thread(target=kill_later, args=(self.child, action.kill_after_s), daemon=True).start()
