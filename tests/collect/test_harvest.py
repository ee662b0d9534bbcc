"""
The pure part of a collection run: commands, probe output, which bytes to read, windows and
where to resume, CPU attribution.
"""

from __future__ import annotations

import math
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from capplan.collect.harvest import (
    SETTLE_S,
    FileStat,
    ReadStep,
    attribute_cpu,
    harvest,
    parse_probe,
    plan_reads,
    probe_command,
    read_command,
)
from capplan.collect.logs import make_parser
from capplan.errors import InputError
from capplan.inventory import LogSpec
from capplan.samples import Window
from capplan.store import LogCursor, NodeSnapshot

PROC = Path(__file__).parent / "data" / "proc"
W = 60.0
PARSER = make_parser(LogSpec(path="/var/log/x.log"), "n:/var/log/x.log")


def line(t: float, latency: float = 0.020, status: int = 200) -> bytes:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    text = f'1.2.3.4 - - [{stamp}] "GET / HTTP/1.1" {status} 5 "-" "ua" {latency:.3f} -\n'
    return text.encode()


def log_of(times: list[float]) -> bytes:
    return b"".join(line(t) for t in times)


def test_probe_command_runs_in_sh_and_parses(tmp_path: Path) -> None:
    """The probe command, run by a real sh on this machine's /proc copy, parses back."""
    log = tmp_path / "a log's name; $(touch x)"
    log.write_bytes(b"abc\n")
    command = probe_command(str(PROC), str(log))
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True, cwd=tmp_path)
    probe = parse_probe(out.stdout.decode(), "n", str(PROC))
    assert probe.problems == ()
    assert probe.snapshot is not None
    assert probe.snapshot.cores >= 1
    assert probe.log == FileStat(log.stat().st_ino, 4)
    assert probe.rotated is None
    assert abs(probe.now - datetime.now(UTC).timestamp()) < 5
    assert not (tmp_path / "x").exists()


def test_read_command_reads_the_range(tmp_path: Path) -> None:
    """tail | head gives exactly bytes [offset, offset + length) of a path quoted for sh."""
    path = tmp_path / 'we\'ird "name"'
    path.write_bytes(bytes(range(256)) * 4)
    out = subprocess.run(["sh", "-c", read_command(str(path), 100, 300)], capture_output=True)
    assert out.stdout == path.read_bytes()[100:400]


def test_probe_problems_keep_the_clock() -> None:
    """Unreadable /proc files are a problem, not an error; garbage output is an error."""
    probe = parse_probe("@capplan:now\n1700000000.5\n@capplan:stat\n@capplan:end\n", "n", "/proc")
    assert probe.now == 1700000000.5
    assert probe.snapshot is None
    assert probe.problems
    assert "n:/proc/stat" in probe.problems[0]
    with pytest.raises(InputError, match="end marker"):
        parse_probe("garbage", "n", "/proc")


def test_plan_first_run_reads_the_newest_bytes() -> None:
    plan = plan_reads("/l", None, FileStat(7, 1000), None, 300)
    assert plan.steps == (ReadStep("/l", 7, 700, 300),)
    assert plan.fresh
    assert plan.unread == 700


def test_plan_resumes_at_the_cursor() -> None:
    cursor = LogCursor("/l", 7, 400, 1e9)
    plan = plan_reads("/l", cursor, FileStat(7, 1000), None, 10_000)
    assert plan.steps == (ReadStep("/l", 7, 400, 600),)
    assert not plan.fresh
    assert plan.notes == ()


def test_plan_after_rotation_reads_the_old_file_first() -> None:
    cursor = LogCursor("/l", 7, 400, 1e9)
    plan = plan_reads("/l", cursor, FileStat(8, 50), FileStat(7, 1000), 10_000)
    assert plan.steps == (ReadStep("/l.1", 7, 400, 600), ReadStep("/l", 8, 0, 50))
    assert "rotated" in plan.notes[0]


def test_plan_rotation_lost_or_truncated_says_so() -> None:
    cursor = LogCursor("/l", 7, 400, 1e9)
    gone = plan_reads("/l", cursor, FileStat(9, 50), None, 10_000)
    assert gone.steps == (ReadStep("/l", 9, 0, 50),)
    assert "not read" in gone.notes[0]
    truncated = plan_reads("/l", cursor, FileStat(7, 50), None, 10_000)
    assert "truncated" in truncated.notes[0]


def test_plan_cap_spans_files() -> None:
    cursor = LogCursor("/l", 7, 400, 1e9)
    plan = plan_reads("/l", cursor, FileStat(8, 500), FileStat(7, 1000), 700)
    assert plan.steps == (ReadStep("/l.1", 7, 400, 600), ReadStep("/l", 8, 0, 100))
    assert plan.unread == 400


def expected(times: list[float], since: float, until: float) -> dict[float, int]:
    counts: dict[float, int] = {}
    for t in times:
        if since <= t < until:
            start = math.floor(t / W) * W
            counts[start] = counts.get(start, 0) + 1
    return counts


def run_harvest(
    data: bytes, cursor: LogCursor | None, now: float, *, cap: int = 1 << 30, inode: int = 7
) -> tuple[dict[float, int], LogCursor]:
    """Harvest the part of `data` (the whole file) a run would read."""
    plan = plan_reads("/l", cursor, FileStat(inode, len(data)), None, cap)
    chunks = [data[s.offset : s.offset + s.length] for s in plan.steps]
    result = harvest(
        "n", "/l", plan, chunks, PARSER, cursor=cursor, now=now, window_s=W, current_inode=inode
    )
    return {w.start.timestamp(): w.requests for w in result.windows}, result.cursor


def test_runs_count_every_line_once() -> None:
    """Whatever the run times, the windows of successive runs add up to each line once."""
    base = 1_700_000_000.0 - 1_700_000_000.0 % W
    times = [base + 13 + i * 0.7 for i in range(1000)]  # ~ 700 s of traffic
    data = log_of(times)
    stored: dict[float, int] = {}
    cursor = None
    for now in (base + 200, base + 201, base + 390, base + 650, base + 2000):
        visible = log_of([t for t in times if t <= now - 1])
        assert data.startswith(visible)
        windows, cursor = run_harvest(visible, cursor, now)
        assert not set(windows) & set(stored), "a window was stored twice"
        stored.update(windows)
    first_full = math.ceil(times[0] / W) * W
    assert stored == expected(times, first_full, cursor.done_until)
    assert cursor.done_until == math.floor((base + 2000 - SETTLE_S) / W) * W


def test_cap_leaves_the_last_window_for_later() -> None:
    """A capped read stores only windows it saw whole; the next run completes the rest."""
    base = 1_800_000_000.0 - 1_800_000_000.0 % W
    times = [base + 5 + i * 0.5 for i in range(600)]
    data = log_of(times)
    first, cursor = run_harvest(data, LogCursor("/l", 7, 0, base), base + 1000, cap=len(data) // 3)
    assert first == expected(times, base, max(first) + W)
    rest, cursor = run_harvest(data, cursor, base + 1000)
    assert not set(rest) & set(first)
    assert first | rest == expected(times, base, cursor.done_until)


def test_first_run_mid_file_skips_the_partial_line_and_window() -> None:
    base = 1_900_000_000.0 - 1_900_000_000.0 % W
    times = [base + 30 + i for i in range(300)]
    data = log_of(times)
    windows, cursor = run_harvest(data, None, base + 400, cap=len(data) - 10)
    first_seen = min(t for t in times if log_of([t]) in data[10:])
    assert windows == expected(times, math.ceil(first_seen / W) * W, cursor.done_until)


def test_bad_lines_are_located_in_the_file() -> None:
    """
    A bad line in a block read from the file's start is named by its line number; in a block
    read from a cursor inside the file, by its byte offset in the file (its line number there
    is not known), which points at exactly that line.
    """
    base = 2_000_000_000.0 - 2_000_000_000.0 % W
    head = log_of([base + 1 + i for i in range(100)])
    data = head + b"garbage one\n" + log_of([base + 101 + i for i in range(50)])
    plan = plan_reads("/l", None, FileStat(7, len(data)), None, 1 << 30)
    result = harvest(
        "n", "/l", plan, [data], PARSER, cursor=None, now=base + 400, window_s=W, current_inode=7
    )
    assert (("line 101", "garbage one"),) == result.bad_examples

    cursor = LogCursor("/l", 7, 40 * len(line(base)), base)
    plan = plan_reads("/l", cursor, FileStat(7, len(data)), None, 1 << 30)
    chunks = [data[s.offset : s.offset + s.length] for s in plan.steps]
    result = harvest(
        "n", "/l", plan, chunks, PARSER, cursor=cursor, now=base + 400, window_s=W, current_inode=7
    )
    ((where, text),) = result.bad_examples
    assert where == f"byte {len(head)}"
    assert data[len(head) :].startswith(b"garbage one\n")
    assert text == "garbage one"


def test_a_block_of_nothing_but_garbage_names_its_byte() -> None:
    """No line of a block read from inside the file parses: the error gives the byte."""
    from capplan.collect.logs import parse_chunk

    with pytest.raises(InputError) as info:
        parse_chunk(b"junk\nmore junk\n", PARSER, source="n:/l", offset=5000)
    assert "n:/l (the line at byte 5000)" in str(info.value)
    assert info.value.line is None
    with pytest.raises(InputError) as info:
        parse_chunk(b"junk\nmore junk\n", PARSER, source="n:/l")
    assert info.value.line == 1


def snapshot(at: float, busy: int, total: int) -> NodeSnapshot:
    return NodeSnapshot(at=at, cpu_busy=busy, cpu_total=total, cores=2)


def window(start: float) -> Window:
    return Window("n", datetime.fromtimestamp(start, UTC), W, 10, 0)


def test_cpu_only_from_a_bracketing_pair() -> None:
    """A window gets the utilization of the snapshots around it, at most two windows apart."""
    snaps = [snapshot(995, 0, 0), snapshot(1065, 35, 100), snapshot(1300, 135, 200)]
    got = attribute_cpu([window(1000), window(1080), window(1140)], snaps, W)
    assert got[0].cpu_util == pytest.approx(0.35)  # 995 .. 1065 brackets 1000 .. 1060
    assert got[1].cpu_util is None  # 1065 .. 1300 is more than two windows
    assert got[2].cpu_util is None
    assert attribute_cpu([window(1000)], [snapshot(1001, 0, 0)], W)[0].cpu_util is None


def test_quoting_is_shlex() -> None:
    """Inventory paths reach the shell only through shlex.quote."""
    hostile = "/x'; rm -rf / #"
    assert shlex.quote(hostile) in read_command(hostile, 0, 1)
    assert shlex.quote(f"{hostile}.1") in probe_command("/proc", hostile)
