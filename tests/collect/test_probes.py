"""
/proc parsers on files captured from a real machine (see data/README.md), and on broken text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capplan.collect.probes import (
    CpuSnapshot,
    LoadAvg,
    MemInfo,
    cpu_utilization,
    parse_loadavg,
    parse_meminfo,
    parse_proc_stat,
)
from capplan.errors import InputError

PROC = Path(__file__).resolve().parent / "data" / "proc"
PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=200)


def read(name: str) -> str:
    return (PROC / name).read_text()


def refusal(call: Callable[[], object]) -> InputError | None:
    """The InputError a call raises, or None; any other exception propagates."""
    try:
        call()
    except InputError as exc:
        return exc
    return None


def test_proc_stat_real() -> None:
    """Busy and total come from the aggregate line; cores count the cpuN lines."""
    text = read("stat")
    first = text.split("\n")[0].split()
    assert "cpu" == first[0]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    total = user + nice + system + idle + iowait + irq + softirq + steal
    cores = sum(1 for line in text.splitlines() if line.split()[0][3:].isdigit())
    expected = CpuSnapshot(busy=total - idle - iowait, total=total, cores=cores)
    assert expected == parse_proc_stat(text, "web-1:/proc/stat")
    assert cores >= 1


def test_cpu_utilization_real() -> None:
    """Two snapshots a second apart, one core spinning: utilization is a fraction in 0..1."""
    earlier = parse_proc_stat(read("stat"), "a")
    later = parse_proc_stat(read("stat.later"), "b")
    utilization = cpu_utilization(earlier, later)
    assert utilization is not None
    expected = (later.busy - earlier.busy) / (later.total - earlier.total)
    assert expected == utilization
    assert 0.3 < utilization <= 1.0  # one of the machine's cores spun for the whole second


def test_cpu_utilization_no_time_or_reboot() -> None:
    """No elapsed time, or counters that went backwards (a reboot), give None."""
    earlier = parse_proc_stat(read("stat"), "a")
    later = parse_proc_stat(read("stat.later"), "b")
    assert cpu_utilization(earlier, earlier) is None
    assert cpu_utilization(later, earlier) is None
    rebooted = CpuSnapshot(busy=10, total=later.total + 100, cores=2)
    assert cpu_utilization(later, rebooted) is None


def test_cpu_utilization_clipped() -> None:
    """iowait can go backwards on some kernels: busy may outgrow total; the result is clipped."""
    assert 1.0 == cpu_utilization(CpuSnapshot(0, 100, 1), CpuSnapshot(120, 200, 1))


def test_proc_stat_guest_not_added() -> None:
    """guest and guest_nice are inside user and nice already."""
    text = "cpu  100 10 20 800 50 5 5 10 40 4\ncpu0 100 10 20 800 50 5 5 10 40 4\n"
    assert CpuSnapshot(busy=150, total=1000, cores=1) == parse_proc_stat(text, "s")


def test_proc_stat_old_kernel() -> None:
    """A 2.4 kernel's four numbers are enough; the rest count as 0."""
    assert CpuSnapshot(busy=30, total=130, cores=0) == parse_proc_stat("cpu 10 5 15 100\n", "s")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "no aggregate 'cpu' line"),
        ("intr 1 2 3\nctxt 5\n", 1, "no aggregate 'cpu' line"),
        ("cpu  1 2 x 4 5 6 7 8\n", 1, "'x' is not a whole number of jiffies"),
        ("cpu0 1 2 3 4\nintr 1\ncpu  1 2 3\n", 3, "3 numbers on the 'cpu' line"),
        ("cpu 1 2 3 4\ncpu 1 2 3 4\n", 2, "a second aggregate 'cpu' line"),
        ("cpu 1 2 -3 4\n", 1, "'-3' is not a whole number"),
    ],
)
def test_proc_stat_malformed(text: str, line: int, fragment: str) -> None:
    """Broken /proc/stat text names the source and the line."""
    with pytest.raises(InputError) as info:
        parse_proc_stat(text, "web-1:/proc/stat")
    assert ("web-1:/proc/stat", line) == (info.value.file, info.value.line)
    assert fragment in str(info.value)


def test_meminfo_real() -> None:
    """MemTotal and MemAvailable, in kB, as the file says."""
    fields = {line.split(":")[0]: int(line.split()[1]) for line in read("meminfo").splitlines()}
    expected = MemInfo(total_kb=fields["MemTotal"], available_kb=fields["MemAvailable"])
    assert expected == parse_meminfo(read("meminfo"), "web-1:/proc/meminfo")


def test_meminfo_old_kernel_estimate() -> None:
    """Without MemAvailable (before 3.14), available is MemFree + Buffers + Cached."""
    lines = [line for line in read("meminfo").splitlines() if not line.startswith("MemAvail")]
    fields = {line.split(":")[0]: int(line.split()[1]) for line in lines}
    info = parse_meminfo("\n".join(lines) + "\n", "m")
    assert fields["MemFree"] + fields["Buffers"] + fields["Cached"] == info.available_kb


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "no MemTotal line"),
        ("MemTotal: 100 kB\n", 1, "no MemAvailable line and no MemFree line"),
        ("MemTotal: 100 kB\nMemAvailable 5 kB\n", 2, "is not 'Name: value kB'"),
        ("MemTotal: 100 kB\nMemAvailable: lots kB\n", 2, "'lots kB' is not a size in kB"),
        ("MemTotal: 100 MB\n", 1, "'100 MB' is not a size in kB"),
    ],
)
def test_meminfo_malformed(text: str, line: int, fragment: str) -> None:
    """Broken /proc/meminfo text names the source and the line."""
    with pytest.raises(InputError) as info:
        parse_meminfo(text, "web-1:/proc/meminfo")
    assert ("web-1:/proc/meminfo", line) == (info.value.file, info.value.line)
    assert fragment in str(info.value)


def test_loadavg_real() -> None:
    """The first three numbers of /proc/loadavg."""
    load1, load5, load15 = (float(v) for v in read("loadavg").split()[:3])
    assert LoadAvg(load1, load5, load15) == parse_loadavg(read("loadavg"), "l")


@pytest.mark.parametrize("text", ["", "0.1 0.2\n", "0.1 nan 0.3 1/2 3\n", "0.1 0.2 -1 1/2 3\n"])
def test_loadavg_malformed(text: str) -> None:
    """Fewer than three loads, or one that is not a finite non-negative number, is refused."""
    with pytest.raises(InputError) as info:
        parse_loadavg(text, "web-1:/proc/loadavg")
    assert ("web-1:/proc/loadavg", 1) == (info.value.file, info.value.line)


@PROPERTY
@given(st.text())
def test_probes_only_raise_input_error(text: str) -> None:
    """On any text, the parsers return a value or raise InputError with a line, nothing else."""
    for parse in (parse_proc_stat, parse_meminfo, parse_loadavg):
        error = refusal(lambda: parse(text, "fuzz"))  # noqa: B023 - called at once
        assert error is None or error.line is not None


@PROPERTY
@given(st.lists(st.sampled_from([*read("stat").splitlines(), "cpu 1 x", "", "cpu"]), max_size=8))
def test_proc_stat_shuffled_lines(lines: list[str]) -> None:
    """Real lines in any order and number: a snapshot or an InputError, nothing else."""
    error = refusal(lambda: parse_proc_stat("\n".join(lines), "fuzz"))
    assert error is None or error.line is not None
