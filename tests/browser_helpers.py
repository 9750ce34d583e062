"""A page opened in a real headless browser (Debian's chromium, installed by tests/run.sh): the DOM after its
scripts ran, what it wrote to the console, and a screenshot's pixels (a PNG read with zlib, no imaging library)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

# as root, in a closed network: no sandbox, no GPU, none of the background connections that this machine refuses
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]
# console lines chromium logs (every level as INFO; older builds wrote CONSOLE(12)):
#   [...:INFO:CONSOLE:12] "Uncaught ReferenceError: ...", source: file:///... (12)
_CONSOLE = re.compile(r':(INFO|WARNING|ERROR|VERBOSE\d*):CONSOLE(?:\(\d+\)|:\d+)?\] "(.*)", source: ')


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (tests/run.sh installs Debian's chromium)")
        pytest.skip("chromium is not installed (tests/run.sh installs it: apt-get install chromium)")
    return path


@dataclass
class Element:
    tag: str
    attrs: Dict[str, str]
    parents: List["Element"] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> List[str]:
        return self.attrs.get("class", "").split()

    def within(self, tag: str = "", id: str = "", cls: str = "") -> bool:
        return any(
            (not tag or p.tag == tag) and (not id or p.attrs.get("id") == id) and (not cls or cls in p.classes)
            for p in self.parents
        )


class _Tree(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: List[Element] = []
        self.all: List[Element] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        e = Element(tag, {k: v or "" for k, v in attrs}, list(self.stack))
        self.all.append(e)
        if tag not in self.VOID:
            self.stack.append(e)

    def handle_startendtag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self.all.append(Element(tag, {k: v or "" for k, v in attrs}, list(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        for e in self.stack:
            e.text += data


@dataclass
class Rendered:
    dom: str
    console: List[Tuple[str, str]]  # (level, message)
    elements: List[Element]

    def find(self, tag: str = "", id: str = "", cls: str = "") -> List[Element]:
        return [
            e
            for e in self.elements
            if (not tag or e.tag == tag) and (not id or e.attrs.get("id") == id) and (not cls or cls in e.classes)
        ]

    def errors(self) -> List[str]:
        """Console messages that are errors: uncaught exceptions, failed loads (chromium logs console.error at the
        same level as console.log: a page that must be quiet is checked with `console == []`)."""
        return [
            m for level, m in self.console if level == "ERROR" or re.search(r"Uncaught|Error|Failed to load|Refused", m)
        ]


def render(page: Path, profile: Path, fragment: str = "", budget_ms: int = 8000) -> Rendered:
    """The DOM of `page` (a file) once its scripts ran, with the console's messages."""
    url = page.resolve().as_uri() + fragment
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tree = _Tree()
    tree.feed(done.stdout)
    console = [(m.group(1), m.group(2)) for m in _CONSOLE.finditer(done.stderr)]
    return Rendered(done.stdout, console, tree.all)


def screenshot(
    page: Path, profile: Path, out: Path, size: Tuple[int, int] = (1280, 1600), budget_ms: int = 8000
) -> Tuple[int, int, List[Tuple[int, int, int]]]:
    """A screenshot of `page`: (width, height, RGB pixels row by row)."""
    done = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    return read_png(out.read_bytes())


def read_png(data: bytes) -> Tuple[int, int, List[Tuple[int, int, int]]]:
    """Width, height and RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = depth = colour = interlace = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    pixels: List[Tuple[int, int, int]] = []
    i = 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels.extend((line[x], line[x + 1], line[x + 2]) for x in range(0, stride, bpp))
        prev = line
    return width, height, pixels


def near(pixel: Tuple[int, int, int], colour: str, tolerance: int = 24) -> bool:
    want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return all(abs(p - w) <= tolerance for p, w in zip(pixel, want, strict=True))
