"""Start a module of danlu's job side from the frozen copy of danlu this file belongs to.

A job script runs `python -I <copy>/launcher/job/boot.py launcher.job ARGS...`. The copy was frozen at submit
(launcher/code/job_side.py): a danlu upgraded while the job waited in the queue does not change what it runs.
Isolated mode keeps the current directory and PYTHONPATH out; the copy goes first on the import path.
Standard library only, and nothing of danlu is imported before the path is set.
"""

import os
import runpy
import sys


def main() -> None:
    copy = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, copy)
    module = sys.argv.pop(1)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
