"""The pictures in the docs: what the text says of each one is what it shows, and a
real browser draws it as its SVG says.

Every `![alt](NAME.svg)` in README.md and docs/*.md is a timeline made by run.py. The
alt text and the paragraph just before the picture are read for what they claim
(riders, orders each, when riders finish, the ideal, who waits where), and each claim
is checked against the data the picture was drawn from (its bars' data-* attributes):
every number of seconds said must be one that a rule below checks. Then headless
Chromium (Debian's `chromium`; CI installs it, its own step: python -m pytest -m
browser) renders each picture, and the pixels at each row's first bar are that bar's
colour.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
PICTURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.svg)\)")
SECONDS = re.compile(r"\b\d+\.\d+ s\b")


@dataclass
class Shown:
    """What a timeline shows, read off its SVG."""

    riders: list[str]
    orders: dict[str, int]  # rider -> orders delivered
    finish: dict[str, float]  # rider -> when its last ride ended
    taken: dict[str, tuple[str, float]] = field(default_factory=dict)  # order number -> (rider, when taken)
    ideal: float = 0.0
    subtitle: str = ""
    killed: tuple[str, float, int] | None = None  # rider, when, orders lost with it


def shown(path: Path) -> Shown:
    root = ET.parse(path).getroot()
    picture = Shown([], {}, {})
    for row in root.findall(f".//{SVG}g[@class='rider']"):
        rider = row.get("data-rider", "")
        bars = row.findall(f"{SVG}rect[@class='delivery']")
        picture.riders.append(rider)
        picture.orders[rider] = len(bars)
        picture.finish[rider] = max((float(bar.get("data-end", "")) for bar in bars), default=0.0)
        for bar in bars:
            number = str(int(bar.get("data-order", "").rsplit("-", 1)[1]))
            picture.taken[number] = (rider, float(bar.get("data-start", "")))
    ideal = root.find(f".//{SVG}line[@class='ideal']")
    assert ideal is not None
    picture.ideal = float(ideal.get("data-seconds", ""))
    picture.subtitle = root.findtext(f".//{SVG}text[@class='subtitle']") or ""
    for row in root.findall(f".//{SVG}g[@class='rider']"):
        crash = row.find(f"{SVG}line[@class='crash']")
        lost = re.search(r"lost (\d+) order", row.findtext(f"{SVG}text[@class='crash-label']") or "")
        if crash is not None and lost:
            picture.killed = (row.get("data-rider", ""), float(crash.get("data-seconds", "")), int(lost[1]))
    return picture


def pictures() -> list[tuple[Path, str, str, Path]]:
    """(document, alt text, the paragraph before it, the SVG) for every picture."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        paragraphs = re.split(r"\n\s*\n", doc.read_text(encoding="utf-8"))
        for index, paragraph in enumerate(paragraphs):
            for match in PICTURE.finditer(paragraph):
                before = paragraphs[index - 1] if index else ""
                found.append((doc, match[1], " ".join(before.split()), doc.parent / match[2]))
    return found


def same(said: str, value: float) -> bool:
    """A number as the text rounds it: '3.0' for 3.03."""
    decimals = len(said.partition(".")[2])
    return f"{value:.{decimals}f}" == said


def check_claims(text: str, picture: Shown) -> list[str]:
    """The claims `text` makes, each checked; what is wrong, and any number of seconds
    that no rule checked."""
    wrong: list[str] = []
    checked: set[str] = set()
    finishes = sorted(picture.finish.values())

    def claim(pattern: str, check: Callable[..., bool]) -> None:
        for match in re.finditer(pattern, text):
            if not check(*match.groups()):
                wrong.append(f"{match[0]!r}, but the picture shows otherwise")
            checked.update(SECONDS.findall(match[0]))

    claim(r"(\d+) riders(?! that lived)", lambda n: int(n) == len(picture.riders))
    claim(r"(\d+) orders each", lambda n: set(picture.orders.values()) == {int(n)})
    claim(
        r"riders finish between (\d+\.\d+) s and (\d+\.\d+) s",
        lambda low, high: same(low, finishes[0]) and same(high, finishes[-1]),
    )
    claim(r"ideal(?: finish)?(?: is| of) (\d+\.\d+) s", lambda s: same(s, picture.ideal))
    claim(r"(rider-\d+) has nothing left to do after (\d+\.\d+) s", lambda r, s: same(s, picture.finish[r]))
    claim(
        r"order (\d+) still waits at (rider-\d+) until (\d+\.\d+) s",
        lambda n, r, s: picture.taken[n][0] == r and same(s, picture.taken[n][1]) and picture.finish[r] > float(s),
    )
    claim(r"the run ends at (\d+\.\d+) s", lambda s: same(s, finishes[-1]))
    killed = picture.killed or ("", -1.0, -1)
    claim(r"(rider-\d+) (?:was )?killed at (\d+\.\d+) s", lambda r, s: r == killed[0] and same(s, killed[1]))
    claim(r"after (\d+) deliver(?:y|ies)", lambda n: int(n) == picture.orders.get(killed[0]))
    claim(r"(\d+) orders were lost with it", lambda n: int(n) == killed[2])
    claim(r"the (\d+) riders that lived", lambda n: int(n) == len(picture.riders) - bool(picture.killed))
    wrong += [f"{said!r} is said of the picture, and no rule here checks it" for said in SECONDS.findall(text)]
    return [problem for problem in wrong if not any(f"'{s}'" in problem for s in checked)]


def test_the_docs_have_pictures_and_each_says_only_what_it_shows() -> None:
    found = pictures()
    assert len(found) >= 2, found
    problems = []
    for doc, alt, before, svg in found:
        picture = shown(svg)
        for text in (alt, before):
            problems += [f"{doc.name}, {svg.name}: {problem}" for problem in check_claims(text, picture)]
        # The command that made it, as the paragraph gives it: the same delivery range.
        delivery = re.search(r"--delivery (\S+)-(\S+) --timeline", before)
        low, high = delivery.groups() if delivery else ("0.2", "1")
        if f"deliveries of {low}-{high} s" not in picture.subtitle:
            problems.append(f"{svg.name}: made with --delivery {low}-{high}? its subtitle: {picture.subtitle!r}")
    assert not problems, "\n".join(problems)


def test_a_claim_the_picture_does_not_show_is_caught() -> None:
    picture = Shown(["rider-1", "rider-2"], {"rider-1": 2, "rider-2": 2}, {"rider-1": 1.04, "rider-2": 2.5})
    picture.ideal = 1.8
    assert check_claims("2 riders, 2 orders each; riders finish between 1.0 s and 2.5 s", picture) == []
    assert check_claims("the ideal finish is 1.8 s", picture) == []
    assert len(check_claims("3 riders", picture)) == 1
    assert len(check_claims("riders finish between 1.0 s and 2.4 s", picture)) == 1
    assert check_claims("it took 7.5 s", picture) == ["'7.5 s' is said of the picture, and no rule here checks it"]


# --- a real browser ---

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB or RGBA bytes) of an 8-bit, non-interlaced PNG, as a
    browser's screenshot is: enough of PNG to read a pixel, with no imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    idat = b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    rows: list[bytes] = []
    previous = bytearray(width * step)
    stride = width * step + 1
    for y in range(height):
        kind, line = raw[y * stride], bytearray(raw[y * stride + 1 : (y + 1) * stride])
        for x in range(len(line)):
            a = line[x - step] if x >= step else 0
            b = previous[x]
            c = previous[x - step] if x >= step else 0
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
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(row) for row in rows]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
@pytest.mark.parametrize("svg", sorted({svg for *_, svg in pictures()}), ids=lambda svg: svg.name)
def test_a_browser_draws_each_bar_where_and_in_the_colour_its_svg_says(svg: Path, tmp_path: Path) -> None:
    root = ET.parse(svg).getroot()
    width, height = int(root.get("width", "")), int(root.get("height", ""))
    png = tmp_path / "picture.png"
    assert CHROMIUM
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path}",
         "--force-device-scale-factor=1", f"--window-size={width},{height}", f"--screenshot={png}", svg.as_uri()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    shot_w, shot_h, rows = png_pixels(png.read_bytes())
    assert (shot_w, shot_h) == (width, height)
    step = len(rows[0]) // shot_w
    looked = 0
    for row in root.findall(f".//{SVG}g[@class='rider']"):
        bar = row.find(f"{SVG}rect[@class='delivery']")
        if bar is None or float(bar.get("width", "")) < 6:
            continue
        x = round(float(bar.get("x", "")) + 3)  # inside the bar, off its white edge and its number
        y = round(float(bar.get("y", "")) + 3)
        pixel = rows[y][x * step : x * step + 3]
        want = bytes.fromhex(bar.get("fill", "").lstrip("#"))
        assert all(abs(p - w) <= 8 for p, w in zip(pixel, want, strict=True)), (row.get("data-rider"), pixel, want)
        looked += 1
    assert looked >= len(root.findall(f".//{SVG}g[@class='rider']")) // 2
    assert rows[2][2 * step : 2 * step + 3] == b"\xff\xff\xff"  # the opaque white background
