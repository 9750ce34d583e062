"""What srun starts on every node of a danlu job: submitit's job-side runner for the pickled node agent.

    python -u -m launcher.jobside <submitit folder>/%j

submitit imports numpy, when it is installed, before unpickling (so that pickles holding arrays load
cleanly). The node agent holds no arrays and never uses numpy, which would add ~50-80 ms to the start of
every node of every job: it is kept out of this process (the training processes it starts are not affected).
"""

import sys


def main() -> None:
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]  # `import numpy` now raises ImportError
    from submitit.core.submission import submitit_main

    submitit_main()


if __name__ == "__main__":
    main()
