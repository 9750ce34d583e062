"""Run ./train.py as NCCL would on GPUs: a rank whose collective fails because a peer died blocks.

On the CPU, torch.distributed uses gloo, whose ranks notice at once that a peer's socket closed and
raise; NCCL ranks instead wait inside the collective (until a watchdog timeout of many minutes, or the
job's time limit). That wait is what the design brief saw on a real 2-node run. This wrapper turns the
gloo error into that wait, so the crash benchmark can show what each launch path does about it. The
injected crash itself (RuntimeError "injected crash ...") is raised as usual.
"""

import os
import runpy
import sys
import time

if __name__ == "__main__":
    sys.argv = ["train.py"] + sys.argv[1:]
    try:
        runpy.run_path("train.py", run_name="__main__")
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 -- any failed collective
        if "injected crash" in str(e):
            raise
        sys.stderr.write(
            f"[nccl-like] rank {os.environ.get('RANK', '?')}: collective failed "
            f"({type(e).__name__}); blocking like an NCCL rank whose peer died\n"
        )
        sys.stderr.flush()
        while True:
            time.sleep(3600)
