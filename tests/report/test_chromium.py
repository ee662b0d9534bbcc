"""
The example's page in a real browser: headless Chromium (Debian's `chromium`) loads it from
file:// with no network, runs its script without a console message, draws every figure, and
makes a screenshot.  A broken copy shows that the checks see what they look for.

Three Chromium runs, each with a fresh profile and everything that could reach a network off.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from capplan.report.build import Report
from capplan.status import ExitStatus
from tests.report.conftest import CommandRun

APT_LINE = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # and no name resolves, should anything try
    "--enable-logging=stderr",
    "--v=0",
)
#: Chromium's log line for a console message: `...:INFO:CONSOLE:1] "text", source: URL (1)`
#: (older builds write `CONSOLE(1)]`).
CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(?P<text>.*)", source: ')
SIZE = (1280, 4000)


@dataclass(frozen=True)
class Run:
    """
    What one Chromium run printed: the DOM (with --dump-dom) and the console messages.
    """

    stdout: str
    console: list[str]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser; fail (never skip) when it is missing, saying what to install."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(f"chromium not installed: run `{APT_LINE}` (as root)")
    return found


def browse(chromium: str, page: Path, profile: Path, *action: str) -> Run:
    done = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *action, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stderr[-2000:]
    return Run(done.stdout, [m["text"] for m in CONSOLE.finditer(done.stderr)])


class Dom(HTMLParser):
    """
    The body's attributes, and per <figure data-figure> whether an <svg> is inside it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.figures: dict[str, int] = {}
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "body":
            self.body = named
        elif tag == "figure" and named.get("data-figure"):
            self._figure = named["data-figure"]
            self.figures[self._figure or ""] = 0
        elif tag == "svg" and self._figure is not None:
            self.figures[self._figure] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None


def dom(text: str) -> Dom:
    parsed = Dom()
    parsed.feed(text)
    parsed.close()
    return parsed


@pytest.fixture(scope="module")
def page(command_run: CommandRun) -> Path:
    assert ExitStatus.OK == command_run.status, command_run.stderr
    return command_run.page


class TestInChromium:
    def test_loads_without_console_messages(
        self, chromium: str, page: Path, report: Report, tmp_path: Path
    ) -> None:
        """
        After load the script has run (data-ready="1"), counted every figure, and every figure
        holds its SVG; the console stayed silent (no error, no CSP refusal).
        """
        run = browse(chromium, page, tmp_path / "profile", "--dump-dom")
        assert [] == run.console
        parsed = dom(run.stdout)
        ids = list(report.data.figure_ids)
        assert "1" == parsed.body.get("data-ready")
        assert str(len(ids)) == parsed.body.get("data-figures")
        assert dict.fromkeys(ids, 1) == parsed.figures

    def test_screenshot(self, chromium: str, page: Path, tmp_path: Path) -> None:
        """The screenshot is the window's size and shows the plots' colours (they were drawn)."""
        shot = tmp_path / "report.png"
        run = browse(
            chromium,
            page,
            tmp_path / "profile",
            f"--screenshot={shot}",
            f"--window-size={SIZE[0]},{SIZE[1]}",
        )
        assert [] == run.console
        assert shot.stat().st_size > 100_000
        with Image.open(shot) as image:
            assert SIZE == image.size
            pixels = image.convert("RGB")
            colours = pixels.getcolors(maxcolors=SIZE[0] * SIZE[1]) or []
            counts = {rgb: n for n, rgb in colours}
        assert len(counts) > 500  # text, lines and fills: far from a blank page
        assert counts.get((31, 119, 180), 0) > 5_000  # the after bars, the chosen curves
        assert counts.get((255, 127, 14), 0) > 5_000  # the cost bars, the capacity markers

    def test_a_missing_plot_is_reported(self, chromium: str, page: Path, tmp_path: Path) -> None:
        """
        The checks see what they look for: with one SVG removed and an outside image added,
        the console shows the page's own error and the policy's refusal, and data-ready is 0.
        """
        text = page.read_text(encoding="utf-8")
        broken = re.sub(r"<svg\b.*?</svg>", "", text, count=1, flags=re.DOTALL)
        broken = broken.replace("<h1>", '<img src="https://report.invalid/x.png"><h1>', 1)
        copy = tmp_path / "broken.html"
        copy.write_text(broken, encoding="utf-8")
        run = browse(chromium, copy, tmp_path / "profile", "--dump-dom")
        parsed = dom(run.stdout)
        assert "0" == parsed.body.get("data-ready")
        assert 0 == parsed.figures["node-web-1"]
        assert any(
            m.startswith("capplan report: 6 of 6 figures; without a plot: node-web-1")
            for m in run.console
        ), run.console
        assert any("violates the following Content Security Policy" in m for m in run.console)
