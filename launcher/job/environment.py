"""The job environment a start ran in, recorded by task 0 beside its logs (RestartLayout.environment): the Python
and every installed distribution of the environment the program runs in, the uv lock file, the GPU driver.

The environment's own interpreter is asked once (`python -I`: PYTHONPATH and the user's site stay out, so the
packages are the environment's own). The record holds these fields only, never an environment variable's value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

# what the environment's interpreter prints: one JSON line, last (a .pth file of the environment may print first)
SCRIPT = r"""
import json, sys
from importlib import metadata
from urllib.parse import unquote, urlparse

packages, editable = {}, {}
for dist in metadata.distributions():
    try:
        name = dist.metadata["Name"]
        if not name or name in packages:
            continue  # the first of a name on sys.path is the one imported
        packages[name] = dist.version
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        if (direct.get("dir_info") or {}).get("editable"):
            editable[name] = unquote(urlparse(direct.get("url", "")).path)
    except Exception:
        continue
print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable, "prefix": sys.prefix,
                  "packages": packages, "editable": editable}))
"""
ASK_TIMEOUT_S = 60.0
SMI_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0  # task 0 waits this long for the record before it writes the start's result
HURRIED_JOIN_S = 3.0  # ... and this long when the job is being stopped (the result must be written in the grace)
NVIDIA_VERSION = Path("/proc/driver/nvidia/version")
DRIVER = re.compile(r"\b(\d+\.\d+(?:\.\d+)*)\b")
CUDA = re.compile(r"CUDA Version:\s*(\d+(?:\.\d+)*)")


class RecordError(Exception):
    """Why the environment's interpreter gave no record (one line)."""


def ask_interpreter(python: str) -> Dict[str, Any]:
    """What the interpreter says of itself and its installed distributions; RecordError when it cannot say."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", SCRIPT],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=ASK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RecordError(f"{python} did not list its packages within {ASK_TIMEOUT_S:.0f}s") from None
    except OSError as e:
        raise RecordError(f"cannot run {python}: {e.strerror or e}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        said = (done.stderr.strip().splitlines() or [""])[-1]
        raise RecordError(f"{python} exited {done.returncode} listing its packages: {said}"[:300])
    try:
        found = json.loads(lines[-1])
    except ValueError:
        raise RecordError(f"{python} printed no JSON record: {lines[-1][:200]!r}") from None
    if not isinstance(found, dict) or not isinstance(found.get("packages"), dict):
        raise RecordError(f"{python} printed a record without packages")
    return found


def lock_candidates(prefix: Optional[str], workdir: str) -> List[Path]:
    """Where a uv lock file may be: beside the environment (a uv project's env is <project>/.venv), the workdir."""
    where = [Path(prefix).parent / "uv.lock"] if prefix else []
    return where + [Path(workdir) / "uv.lock"]


def uv_lock(candidates: List[Path]) -> Optional[Dict[str, str]]:
    """The first lock file that exists, with the sha256 of its bytes; None when there is none."""
    for path in candidates:
        if path.is_file():
            return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return None


def gpu() -> Optional[Dict[str, Optional[str]]]:
    """NVIDIA's driver version (its /proc file) and the CUDA version nvidia-smi reports; None without a driver."""
    if not NVIDIA_VERSION.exists():
        return None
    try:
        first = NVIDIA_VERSION.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        first = ""
    module = first.split("Kernel Module", 1)[-1]  # the version follows the module's name
    driver = DRIVER.search(module)
    return {"driver": driver.group(1) if driver else None, "cuda": cuda_version()}


def cuda_version() -> Optional[str]:
    """The "CUDA Version: X.Y" of nvidia-smi's output, None without nvidia-smi or its answer."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run(
            [smi], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=SMI_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = CUDA.search(done.stdout)
    return found.group(1) if found else None


def environment_record(python: str, workdir: str) -> Dict[str, Any]:
    """The Environment record (launcher/layout.py); never raises: a failure gives {"error": one line} with the
    fields known without it."""
    record: Dict[str, Any] = {}
    prefix: Optional[str] = None
    try:
        found = ask_interpreter(python)
        prefix = str(found["prefix"]) if found.get("prefix") else None
        record.update(
            python=found.get("python"),
            executable=found.get("executable"),
            packages=found["packages"],
            editable=found.get("editable") or {},
        )
    except RecordError as e:
        record["error"] = str(e)
    except Exception as e:  # never the reason a start fails
        record["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    for part, known in (("uv_lock", lambda: uv_lock(lock_candidates(prefix, workdir))), ("gpu", gpu)):
        try:
            record[part] = known()
        except Exception as e:
            record[part] = None
            record.setdefault("error", f"{part}: {type(e).__name__}: {e}".splitlines()[0])
    record.update(host=socket.gethostname(), recorded=time.time())
    return record


def write_record(target: Path, record: Dict[str, Any]) -> bool:
    """Write the record whole (a temporary file of the same folder, then renamed); False when it cannot be."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return True
    except (OSError, TypeError, ValueError):
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


def record_environment(python: str, workdir: str, target: Path) -> None:
    """Record the environment of interpreter `python` (and the job's workdir, for its uv.lock) in `target`."""
    write_record(target, environment_record(python, workdir))


def summary(record: Dict[str, Any]) -> str:
    """The record in a few words, for the agent's log."""
    if record.get("error"):
        return f"not recorded whole: {record['error']}"
    return f"Python {record.get('python')}, {len(record.get('packages') or {})} packages"


def interpreter(argv: List[str], path: Optional[str]) -> str:
    """The environment's interpreter: the command's first word when it is a python, else `python` on the job's
    PATH (an `accelerate`/`torchrun` of the environment comes with its python)."""
    first = argv[0] if argv else ""
    if Path(first).name.startswith("python"):
        return shutil.which(first, path=path) or first
    return shutil.which("python", path=path) or "python"


class Recorder:
    """Records the environment in a daemon thread, beside the running program; `wait` before the start's result."""

    def __init__(self, python: str, workdir: str, target: Path, say: Callable[[str], None]) -> None:
        self._args = (python, workdir, target)
        self._say = say
        self._thread = threading.Thread(target=self._record, daemon=True, name="danlu-environment")

    def start(self) -> None:
        self._thread.start()

    def _record(self) -> None:
        python, workdir, target = self._args
        began = time.monotonic()
        try:
            record = environment_record(python, workdir)
            written = write_record(target, record)
            took = time.monotonic() - began
            where = target.name if written else f"not written to {target}"
            self._say(f"environment ({python}) in {took:.1f}s: {summary(record)} ({where})")
        except Exception as e:  # a daemon thread's exception would only be printed: say it in the log instead
            self._say(f"environment not recorded: {type(e).__name__}: {e}".splitlines()[0])

    def wait(self, hurry: bool = False) -> None:
        """Wait for the record (a short run still gets one): at most JOIN_TIMEOUT_S, HURRIED_JOIN_S in a stop."""
        if not self._thread.is_alive():
            return
        timeout = HURRIED_JOIN_S if hurry else JOIN_TIMEOUT_S
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._say(f"environment still being recorded after {timeout:.0f}s: the start ends without it")
