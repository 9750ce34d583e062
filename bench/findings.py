"""The findings at the end of RESULTS.md: what the benchmark found and what was fixed, one bullet per topic, written
from the figures of the same run (Results.figures): nothing typed by hand but the words around them."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from bench.results import fmt

Figures = Dict[str, Any]

ROUND_ONE = """\
## Earlier findings (issue 8, round one)

- `danlu status` with 10,000 runs first missed 1 s: every row read the run's whole config, SQLite sorted wide rows,
  logs were read per run; fixed in ecf6adc and c16d9eb. A pending job array cancelled whole left its runs PENDING
  (fixed in 1bd6315). Crash -> end with NCCL-like ranks waited for torch elastic's 30 s SIGKILL; the node agent
  kills the ranks still alive 3 s after elastic's closing signal (e46c20a). The node agent's start lost time to
  numpy imported by submitit; srun starts `python -m launcher.job`, which keeps numpy out.
- hydra-submitit-launcher also sends a sweep as one job array, but first pickles the launcher with Hydra's global
  state into every job, then blocks in `job.results()` until every job has ended. The shell loop pays one sbatch
  round trip per job.
"""


def sweep_verdict(f: Figures) -> str:
    """Whether the 10,000-run sweep met its target (5 s) in this run, with every repeat and the newer cluster's
    figure beside it, and what is left when it did not."""
    samples = f.get("sweep10000_samples") or [f["sweep10000"]]
    reps = ", ".join(fmt(x) for x in samples)
    spread = max(samples) / min(samples)
    newer = (
        f"; the same command on Slurm {f['newer']}, later in this run: {fmt(f['sweep10000_newer'])} s"
        if "sweep10000_newer" in f
        else ""
    )
    if f["sweep10000"] < 5:
        return f"The target (5 s) is met: the repeats took {reps} s{newer}."
    return (
        f"The target (5 s) is missed in this run: the repeats took {reps} s (the slowest "
        f"{spread:.2f}x the fastest){newer}. What is left is CPU time of the one danlu process, spread over the "
        "phases above with no single cause: per run, its config copied and its override applied, its "
        "dataclasses built, its args checked against the program's flags, its lines of the array's script "
        "rendered and its row written to the store. Three further cuts found by cProfile (each program file "
        "read once per sweep, not three times per run; the config copied by unpickling it; the per-task pickle "
        "paths made only when needed) made no difference that stood out of this 2-core machine's run-to-run "
        "spread, and were not kept."
    )


def _help(f: Figures) -> Optional[str]:
    if "help" not in f:
        return None
    line = (
        f"- **`danlu --help`** takes {fmt(f['help'])} s, {f['help'] / f['pass']:.2f}x `python -c pass` "
        f"({fmt(f['pass'])} s). `python -X importtime` showed the CLI's own import spent most of its time on "
        "`typing` (for one annotation in launcher/cli/__init__.py) and on `shutil` (argparse's help formatter "
        "asks it for the terminal width; it imports bz2 and lzma): both are gone from that path. What is left "
        "is argparse itself (re, gettext, locale)"
    )
    if "help_m_before" in f:
        line += (
            f"; `python -m launcher.cli --help` measured here at the commit before and now: "
            f"{fmt(f['help_m_before'])} s -> {fmt(f['help_m_now'])} s"
        )
    return line + "."


def _submit(f: Figures) -> Optional[str]:
    if "submit_one run" not in f:
        return None
    line = (
        f"- **`danlu submit` of one run**: {fmt(f['submit_one run'])} s median, of which "
        f"{fmt(f['submit_one run_start'])} s the interpreter and the CLI "
        f"and {fmt(f['submit_one run_composition'])} s "
        "Hydra (its import, the override parser, one composition); the breakdown is in section 3 "
        "(DANLU_TIMINGS, launcher/timings.py). Every submit also ran `scontrol show config` and `scontrol show "
        "partition` for the stop grace (KillWait, GraceTime): they now come from the cluster facts cached "
        "for an hour (launcher/cluster_facts.py stop_graces), so a submit asks slurmctld only for the sbatch"
    )
    line += (
        ". Its process also spent a good part of its time after its last line, "
        "in the interpreter's teardown (clearing the "
        "modules of Hydra, OmegaConf, jinja and submitit): `danlu` now ends with os._exit after joining its "
        "threads, running atexit and flushing (launcher/cli/__init__.py entry)"
    )
    if "submit_floor" in f:
        line += (
            f". The target (0.25 s) is missed: importing the libraries a submit needs, and nothing else, "
            f"takes {fmt(f['submit_floor'])} s here (section 3); below that only a submit without Hydra's "
            "composition would go"
        )
    if "submit_one run_before" in f:
        line += f"; the same command at the commit before: {fmt(f['submit_one run_before'])} s"
    if "sbatch_script" in f:
        line += f"; `sbatch` of the same script alone: {fmt(f['sbatch_script'])} s"
    return line + "."


def _sweep(f: Figures) -> Optional[str]:
    if "sweep10000" not in f:
        return None
    line = (
        f"- **A 10,000-run sweep** is accepted {fmt(f['sweep10000'])} s after the command starts (10 arrays of "
        "at most MaxArraySize 1001). Profiling (cProfile) found per-run work that did not depend on the run: "
        "every value override checked by OmegaConf (`OmegaConf.update` on a typed config, the largest "
        "part), `copy.deepcopy` of the composed config, `dataclasses.fields()` for each nested dataclass "
        "of every run, the program's path resolved and its flag table rebuilt per key, the workdir and the runs "
        "folder resolved per run, and the file checks per run. Now an override's value is checked by OmegaConf "
        "once per key and value type when its node takes such values as they are (an Any, int, float, bool or "
        "str node; anything else is still checked every time), and the rest is computed once per sweep. "
        "Then the file system: every run's folder and output dir (20,000 for 10,000 runs) were made before "
        "the sbatch calls and took longer than all else that touches the disk; a run's own folders are now "
        "made by its node agents when it starts (launcher/job/agent.py), a submit makes only the sweep's, "
        "and an array's agents are pickled once (10 pickles, not 10,000)"
    )
    if "sweep10000_parts" in f:
        line += f". Where the median run's time went (DANLU_TIMINGS): {f['sweep10000_parts']}"
    if "sweep10000_before" in f:
        line += (
            f"; the same sweep at the commit before: {fmt(f['sweep10000_before'])} s "
            f"({f['sweep10000_before'] / f['sweep10000']:.1f}x)"
        )
    return line + ". " + sweep_verdict(f)


def _status_100000(f: Figures) -> Optional[str]:
    if "status100000_steady" not in f:
        return None
    line = (
        f"- **`danlu status --all` with 100,000 runs**: {fmt(f['status100000_first'])} s first look, "
        f"{fmt(f['status100000_steady'])} s steady; one raw sacct for the same jobs "
        f"{fmt(f['status100000_sacct'])} s. It first missed the target: each run's row in the store holds "
        "its whole resolved config, so reading 8 short columns of 100,000 runs read the whole store, the "
        "latest attempt was found by a correlated MAX per run, and the rows were sorted in Python. Now "
        "what status reads has covering indexes of its own (store migration 4: runs_brief in the table's "
        "order, attempts_brief), squeue and sacct are asked about the active jobs (attempts_active) while "
        "the rows are read (state/reconcile.py EarlyAsk). Then: status reads only the columns it shows "
        '(store.VIEWS "table"; the refresh reads what the state machine needs for the runs still active '
        "only), the table is made from the store's rows by position with no item per row "
        "(views/table.py Fields), the cells after RUN and JOBID once per distinct value and a line's end "
        "once per distinct one (100,000 finished runs share a few states, reasons and times), and a "
        "one-shot status runs without the cycle collector (each of its passes walked all 100,000 rows). "
        "And one fault: `danlu` ends with os._exit, which left the store's SQLite connection open, so the "
        "write-ahead log was never checkpointed and removed; every later command rebuilt its index from "
        "the whole file and copied it all into the database again; the connection is now closed at exit "
        "(launcher/store/). After a refresh that changed "
        "thousands of runs their rows are made from the updates the store took, not read again "
        "(store.updated_rows). What is left is SQLite decoding 100,000 rows "
        f"and Python making 100,000 lines: steady, {f.get('status100000_steady_parts', '')}; first "
        f"look, {f.get('status100000_first_parts', '')}"
    )
    if f["status100000_first"] >= 2:
        line += (
            ". The first look misses its target (2 s): SQLite writes 100,000 attempts' new states "
            "(each update also moves the attempt's entries in two indexes), and the state machine steps "
            "every run; below that needs fewer store writes than one per attempt that changed"
        )
    return line + "."


def _status_10000(f: Figures) -> Optional[str]:
    if "status10000_steady" not in f:
        return None
    ratio = f["status10000_steady"] / f["status10000_sacct"]
    text = (
        f"- **With 10,000 runs** status takes {ratio:.1f}x one raw sacct ({fmt(f['status10000_steady'])} vs "
        f"{fmt(f['status10000_sacct'])} s)"
    )
    if ratio > 2 and "status_empty" in f:
        text += (
            f": the target (2x) is missed. `danlu status` on an empty store takes {fmt(f['status_empty'])} s "
            f"(section 4), already {f['status_empty'] / f['status10000_sacct']:.1f}x this sacct, which answers "
            "from the local slurmdbd in milliseconds: the interpreter, and the imports of the store (sqlite3), "
            "the state machine and the table. Reading 10,000 rows and printing 10,000 lines come on top"
        )
    return text + "."


def _launch(f: Figures) -> Optional[str]:
    if "launch" not in f or "launch_cli" not in f:
        return None
    over = f["launch"] - f["launch_hand"]
    line = (
        f"- **Submit -> first training step** (2 nodes x 2 ranks): {fmt(f['launch'])} s, the hand-written "
        f"script {fmt(f['launch_hand'])} s ({f['launch'] / f['launch_hand']:.2f}x, {over:+.2f} s). Of the "
        f"difference, {fmt(f['launch_cli'] - f['launch_cli_hand'])} s is the submit command "
        f"({fmt(f['launch_cli'])} s vs sbatch's {fmt(f['launch_cli_hand'])} s: Hydra's import and composition, "
        f"above) and {f['launch_job'] - f['launch_job_hand']:+.2f} s the job from its start to step 1 "
        f"({fmt(f['launch_job'])} s vs {fmt(f['launch_job_hand'])} s: danlu's batch script finds the head node "
        "and a free port, and its node agents run beside the 4 ranks on these 2 cores)"
    )
    if f["launch"] > 1.1 * f["launch_hand"]:
        line += "; the 10% target is missed"
    return line + "."


def _report(f: Figures) -> Optional[str]:
    if "report_cold" not in f:
        return None
    return (
        f"- **`danlu report`** over 100 runs x 10,000 steps: {fmt(f['report_cold'])} s the first time "
        f"(every log parsed), {fmt(f['report_warm'])} s again (its cache); a notebook's regex loop over the "
        f"same logs: {fmt(f['report_loop'])} s, with no table."
    )


def _load(f: Figures) -> Optional[str]:
    if "rpc_refresh" not in f:
        return None
    line = f"- **slurmctld load**: a status refresh costs {f['rpc_refresh']:g} RPCs"
    if "rpc_watch_min" in f:
        line += f", a minute of --watch {f['rpc_watch_min']:g}"
    if "rpc_submit" in f:
        line += f", a 1,000-run submit {f['rpc_submit']:g}"
    return line + " (section 2: by type, next to a shell loop, `watch squeue` and submitit's polling)."


TOPICS: List[Callable[[Figures], Optional[str]]] = [
    _help,
    _submit,
    _sweep,
    _status_100000,
    _status_10000,
    _launch,
    _report,
    _load,
]


def findings(f: Figures) -> str:
    """What this run found, written from its own numbers: a bullet for each topic it measured."""
    out = ["## What the benchmark found, and what was fixed (issue 18)", ""]
    out += [line for line in (topic(f) for topic in TOPICS) if line is not None]
    return "\n".join(out) + "\n"
