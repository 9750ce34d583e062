"""Webhook messages (notify.url): where the URL is kept, the body each kind of bot takes, delivery with retries.

Shared by both sides (standard library only): the job sends a failed run's message, the sweep's summary job
sends the summary. The URL is a secret (anyone holding it can post to the channel): notify.url names where it
is — `env:NAME` (a variable of the submitting shell, which the job inherits through sbatch --export=ALL) or
`file:PATH` (a file only its owner may read) — and it is read only at the moment of sending. No message of
this module ever contains the URL.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

FORMATS = ("json", "slack", "feishu", "dingtalk")
TRIES = 3
TIMEOUT_S = 10.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


class WebhookError(Exception):
    """A notify.url reference that cannot give a URL; the message never holds the URL itself."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def reference_problem(ref: str) -> Optional[WebhookError]:
    """What is wrong with the form of a notify.url value (None when it is env:NAME or file:PATH)."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", ref, re.IGNORECASE):
        return WebhookError(
            "notify.url holds the webhook URL itself: it would be written into the store and the job scripts",
            "keep it in a variable or a file and name that: export "
            "DANLU_WEBHOOK=<url>, then notify.url=env:DANLU_WEBHOOK (or notify.url=file:~/.webhook, "
            "chmod 600)",
        )
    kind, _, rest = ref.partition(":")
    if kind == "env" and _ENV_NAME.match(rest):
        return None
    if kind == "file" and rest:
        return None
    return WebhookError(
        f"notify.url={ref!r} is neither env:NAME nor file:PATH",
        "e.g. notify.url=env:DANLU_WEBHOOK or notify.url=file:~/.config/danlu/webhook",
    )


def resolve(ref: str, environ: Mapping[str, str] = os.environ) -> str:
    """The URL behind a reference, read now. Raises WebhookError saying what is missing (never the URL)."""
    problem = reference_problem(ref)
    if problem:
        raise problem
    kind, _, rest = ref.partition(":")
    if kind == "env":
        url = environ.get(rest, "").strip()
        if not url:
            raise WebhookError(
                f"notify.url={ref}: ${rest} is not set",
                f"export {rest}=<the webhook URL> in the "
                "shell you submit from; the job inherits it and danlu never writes it down",
            )
    else:
        path = Path(rest).expanduser()
        try:
            info = path.stat()
            text = path.read_text()
        except OSError as e:
            raise WebhookError(
                f"notify.url={ref}: cannot read {path} ({e.strerror})",
                f"write the URL into it: install -m 600 /dev/null {path}; then edit it",
            ) from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise WebhookError(
                f"notify.url={ref}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):o})",
                f"chmod 600 {path}: the URL is a secret",
            )
        url = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not re.match(r"^https?://\S+\Z", url):
        raise WebhookError(f"notify.url={ref} does not hold an http(s) URL", "it should hold one line: https://...")
    return url


def body(fmt: str, message: Mapping[str, Any]) -> Dict[str, Any]:
    """The JSON a bot of this kind takes: json is the message itself; the others carry its text."""
    text = str(message["text"])
    if fmt == "slack":  # Slack incoming webhooks, and the Slack-compatible ones (Mattermost, Rocket.Chat, ...)
        return {"text": text}
    if fmt == "feishu":  # Feishu / Lark custom bots
        return {"msg_type": "text", "content": {"text": text}}
    if fmt == "dingtalk":
        return {"msgtype": "text", "text": {"content": text}}
    return dict(message)


def deliver(
    ref: str,
    fmt: str,
    message: Mapping[str, Any],
    say: Callable[[str], None],
    tries: int = TRIES,
    backoff_s: float = 2.0,
    environ: Mapping[str, str] = os.environ,
) -> bool:
    """POST the message; retried on errors; every failure is said (never the URL), none is raised."""
    try:
        url = resolve(ref, environ)
    except WebhookError as e:
        say(f"notify: not sent: {e.message}")
        return False
    import urllib.error  # here, not at the top: every submit validates notify.url, few send (~15 ms)
    import urllib.request

    data = json.dumps(body(fmt, message)).encode()
    for attempt in range(1, tries + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) only
                response.read()
            return True
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, OSError) as e:
            why = str(getattr(e, "reason", e))
        why = why.replace(url, "<notify.url>")
        if attempt < tries:
            say(f"notify: delivery failed ({why}); trying again in {backoff_s * attempt:.0f}s ({attempt} of {tries})")
            time.sleep(backoff_s * attempt)
        else:
            say(f"notify: delivery failed ({why}) after {tries} tries; the run is not affected")
    return False
