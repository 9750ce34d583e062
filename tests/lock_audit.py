"""Reading the lock holders' audit log (DANLU_LOCK_AUDIT, written by launcher/dir_lock.py) and finding moments
when two processes held one lock.

Each line is `<event> <lock name> <holder token> <CLOCK_MONOTONIC ns>`: `acquire` right after a holder took the
lock, `release` right before it gives it back, `break` right before a waiter moves a dead holder's lock away (the
waiter may be killed right after). A holder's recorded time lies inside the time it really held the lock, so
recorded overlaps are real ones. All writers must run on one machine (one monotonic clock), as the tests' processes
do, and every process that takes the lock must write to the log (a break it does not record leaves its holder's
time open).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple


@dataclass(frozen=True)
class Event:
    event: str
    lock: str
    token: str
    ns: int


def read_audit(path: Path) -> List[Event]:
    events = []
    for line in path.read_text().splitlines():
        event, lock, token, ns = line.split()
        events.append(Event(event, lock, token, int(ns)))
    return events


def holding_intervals(events: List[Event]) -> Dict[str, List[Tuple[int, int, str]]]:
    """(start, end, token) of each holding, by lock name. A holder that never released (killed) holds until its
    lock was broken, or to the end of the log."""
    end_of_log = max((e.ns for e in events), default=0)
    starts: Dict[Tuple[str, str], int] = {}
    spans: Dict[str, List[Tuple[int, int, str]]] = {}
    for e in sorted(events, key=lambda e: e.ns):
        key = (e.lock, e.token)
        if e.event == "acquire":
            starts[key] = e.ns
        elif key in starts:  # release, or break of a holder that never released
            spans.setdefault(e.lock, []).append((starts.pop(key), e.ns, e.token))
    for (lock, token), start in starts.items():
        spans.setdefault(lock, []).append((start, end_of_log, token))
    return spans


def double_holders(events: List[Event]) -> List[Tuple[str, str, str]]:
    """(lock, token, token) of each pair of holdings of one lock that overlap in time."""
    found = []
    for lock, spans in holding_intervals(events).items():
        spans.sort()
        latest_end, latest = -1, ""
        for start, end, token in spans:
            if start < latest_end:
                found.append((lock, latest, token))
            if end > latest_end:
                latest_end, latest = end, token
    return found
