"""
Benchmark: ``capplan collect`` from many sshd on loopback, side by side with parallel-ssh and a
plain serial ssh loop running the same remote commands.

    python -m bench.collect [--nodes 50] [--lines 20000] [--parallel 32] [--repeat 3]
                            [--single-sample 10] [--ssh-timeout 30] [--node-bashrc]

Needs root (the sshd servers of ``tests/collect/sshd.py`` run as root, each in its own mount
namespace), Debian's openssh-server and client, and Debian's ``pssh`` (``parallel-ssh``).

The pool: ``--nodes`` real sshd on 127.0.0.2, 127.0.0.3, … (one port each, one host key each,
one user key for all), each node with its own files under ``ROOT/nodes/ADDRESS/``: a copy of
``tests/collect/data/proc`` and an nginx access log of ``--lines`` lines (combined format plus
``$request_time $upstream_response_time``, timestamps spread over the last 30 minutes, every
line the same length so every log has the same size).  Everything stays on 127.0.0.0/8.
The nodes log in as this machine's user (root), whose ``~/.bashrc`` bash sources in every SSH
session (it does when sshd starts it); a heavy one (pyenv init: ~0.1 s CPU per session here)
would weigh on each command, so the servers set ``SetEnv SHLVL=1``, which stops that, unless
``--node-bashrc``.

Each contestant does, per node, the same two remote commands — ``harvest.probe_command`` (clock,
``/proc`` stat/meminfo/loadavg, ``stat`` of the log) then ``harvest.read_command`` of the whole
log (offset 0, its size) — and all are timed as wall time from outside, ``--repeat`` times
interleaved (median printed):

* ``capplan`` — ``capplan collect -i INV --db FRESH --json --parallel P`` as a subprocess, a
  fresh database each run so each run reads every log whole (the first run of a node reads the
  newest ``--max-bytes``, 64M by default, which covers it); its JSON must say every node ok with
  windows.  One paramiko connection per node for both commands, then parsing, windowing and the
  SQLite store.
* ``parallel-ssh, probe then read`` — ``parallel-ssh -h HOSTS -p P -t T -x "-F EMPTY -i KEY -o
  UserKnownHostsFile=KH -o StrictHostKeyChecking=yes -o BatchMode=yes …" -o OUTDIR CMD`` twice,
  once per command, as a user would script it; each is one OpenSSH ``ssh`` process (a full
  handshake) per node.  The nodes share this machine's filesystem, so the one command line
  finds each node's own files from the server address in ``$SSH_CONNECTION``: ``cd
  ROOT/nodes/$(echo $SSH_CONNECTION | cut -d' ' -f3) && …`` with relative paths (the same bytes
  read as capplan's absolute ones).  The outputs are checked (probe end marker, log size).
* ``parallel-ssh, joined`` — the same with ``probe; read`` in one invocation (one handshake per
  node, as capplan): the fairest to parallel-ssh.  It only fetches bytes; capplan also parses
  and stores them.
* ``serial ssh loop`` — a Python loop calling ``ssh`` node after node, two invocations per node
  (probe, then read), outputs kept in memory and checked.
* ``capplan, slowest single node`` — ``capplan collect --node NAME`` (fresh database) on
  ``--single-sample`` nodes evenly spread over the pool (0: every node), each ``--repeat``
  times; the slowest node's median.  Like the full run it includes the interpreter's start.
* ``capplan --dry-run`` — start-up, inventory and planning alone (connects to nothing), for
  reference: the part of every capplan time that is not SSH.

Besides wall time, each row gives the client CPU (this benchmark's finished children during
the run: capplan, or parallel-ssh and its ssh processes, or the loop's ssh) and the node CPU
(the sshd servers' connection processes and the commands they ran, from ``/proc/PID/stat``
cutime/cstime of each sshd).  Client and nodes share the machine's cores: (client + node CPU)
/ cores is the least wall time the machine allows for a run's work, printed for capplan's.

Targets (from the issue): capplan at least as fast as parallel-ssh (both variants: the verdict
uses the faster), and the full run within 2x the slowest single node's time.  The benchmark
exits 0 whether or not they are met: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from capplan.collect.harvest import probe_command, read_command
from tests.collect.sshd import Server, SSHLab

REPO = Path(__file__).resolve().parent.parent
PROC = REPO / "tests" / "collect" / "data" / "proc"
CAPPLAN = str(Path(sys.executable).with_name("capplan"))
PSSH = shutil.which("parallel-ssh") or "/usr/bin/parallel-ssh"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
TIMEOUT_S = 300  # every subprocess
SPAN_S = 1800.0  # the logs' timestamps cover the last 30 minutes
END_MARK = b"@capplan:end"
#: sshd_config line that keeps bash from sourcing the login user's ~/.bashrc in every session
#: (bash does that when started by sshd with SHLVL unset): the fake nodes share this machine's
#: root account, whose .bashrc may be anything (here: pyenv init, ~0.1 s CPU per session).
NO_BASHRC = "SetEnv SHLVL=1\n"


def nginx_line(stamp: str, latency_s: float, status: int = 200) -> str:
    """
    One line of nginx's combined format plus $request_time $upstream_response_time (as in
    tests/collect/test_collect_ssh.py), the timestamp already formatted.
    """
    return (
        f'127.0.0.1 - - [{stamp}] "GET /item HTTP/1.1" {status} 512 "-" "bench/1.0" '
        f"{latency_s:.3f} {latency_s:.3f}\n"
    )


def write_log(path: Path, lines: int, seed: int, now: float) -> None:
    """
    ``lines`` requests evenly over the last ``SPAN_S`` seconds before ``now``, latencies
    10-60 ms; every line has the same length.
    """
    start = now - SPAN_S
    stamps: dict[int, str] = {}
    out = []
    for i in range(lines):
        t = int(start + i * SPAN_S / lines)
        stamp = stamps.get(t)
        if stamp is None:
            stamp = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
            stamps[t] = stamp
        out.append(nginx_line(stamp, 0.010 + ((i * 7919 + seed) % 51) / 1000))
    path.write_text("".join(out))


@dataclass
class Node:
    """
    One fake node: its name, its sshd, and its files.
    """

    name: str
    server: Server
    home: Path

    @property
    def proc(self) -> Path:
        return self.home / "proc"

    @property
    def log(self) -> Path:
        return self.home / "access.log"


class Pool:
    """
    ``count`` nodes with their sshd, files, inventory, known_hosts and host list.
    """

    def __init__(
        self, root: Path, lab: SSHLab, count: int, lines: int, timeout_s: float, sshd_extra: str
    ) -> None:
        self.root = root
        self.lab = lab
        self.nodes: list[Node] = []
        now = time.time()
        for i in range(count):
            host = f"127.0.0.{i + 2}"
            server = lab.start(host, extra=sshd_extra)
            home = root / "nodes" / host
            home.mkdir(parents=True)
            shutil.copytree(PROC, home / "proc")
            node = Node(f"web-{i + 1}", server, home)
            write_log(node.log, lines, i, now)
            self.nodes.append(node)
        sizes = {n.log.stat().st_size for n in self.nodes}
        assert len(sizes) == 1, f"the logs differ in size: {sorted(sizes)}"
        self.log_size = sizes.pop()
        self.known_hosts = lab.known_hosts(*(n.server for n in self.nodes))
        self.ssh_config = root / "ssh_config"  # empty: ~/.ssh/config plays no part
        self.ssh_config.touch()
        self.inventory = self._inventory(timeout_s)
        self.hosts = root / "hosts"
        self.hosts.write_text(
            "".join(f"{lab.user}@{n.server.host}:{n.server.port}\n" for n in self.nodes)
        )

    def _inventory(self, timeout_s: float) -> Path:
        lines = [
            "cluster: bench",
            "ssh:",
            f"  user: {self.lab.user}",
            f"  identity_file: {self.lab.user_key}",
            f"  known_hosts: {self.known_hosts}",
            f"  timeout_s: {timeout_s:g}",
            f"  config_file: {self.ssh_config}",
            "nodes:",
        ]
        for node in self.nodes:
            lines += [
                f"  - name: {node.name}",
                f"    host: {node.server.host}",
                f"    address: {node.server.host}:8080",
                f"    ssh: {{port: {node.server.port}}}",
                f"    proc_dir: {node.proc}",
                f"    log: {{path: {node.log}, format: nginx}}",
            ]
        path = self.root / "inventory.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def ssh_options(self) -> list[str]:
        """
        The OpenSSH client options of parallel-ssh and the serial loop.
        """
        return [
            "-F",
            str(self.ssh_config),
            "-i",
            str(self.lab.user_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]

    def shared_commands(self) -> tuple[str, str]:
        """
        The probe and the read as one command line for every node: each finds its own
        directory from the server address of ``$SSH_CONNECTION``.
        """
        here = "\"$(echo $SSH_CONNECTION | cut -d' ' -f3)\""
        cd = f"cd {shlex.quote(str(self.root / 'nodes'))}/{here}"
        probe = f"{cd} && {{ {probe_command('proc', 'access.log')}; }}"
        read = f"{cd} && {{ {read_command('access.log', 0, self.log_size)}; }}"
        return probe, read


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """
    ``subprocess.run`` with no stdin, output captured and the benchmark's timeout.
    """
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
        **kwargs,
    )


class ContestantError(RuntimeError):
    """
    A contestant did not do the whole job: its time would mean nothing.
    """


@dataclass(frozen=True)
class Measure:
    """
    One timed run: wall seconds, the CPU seconds of this benchmark's children started during
    it (the client side: capplan, or parallel-ssh and its ssh processes, or the loop's ssh),
    and the CPU seconds of the sshd servers' finished connection processes and the commands
    they ran (the node side).
    """

    wall: float
    client_cpu: float
    server_cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _servers_cpu(lab: SSHLab) -> float:
    """
    CPU seconds of every sshd (each server's process is sshd itself: ``unshare`` and ``sh``
    exec it) and of the connection processes it has reaped.
    """
    total = 0
    for server in lab.servers:
        try:
            text = Path(f"/proc/{server.process.pid}/stat").read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def timed(lab: SSHLab, action: Callable[[], None]) -> Measure:
    """
    Run ``action`` and measure it.
    """
    client, server = _children_cpu(), _servers_cpu(lab)
    t = time.perf_counter()
    action()
    wall = time.perf_counter() - t
    time.sleep(0.2)  # let the servers reap their last connection processes
    return Measure(wall, _children_cpu() - client, _servers_cpu(lab) - server)


def median(runs: list[Measure]) -> Measure:
    """
    The median of each figure (of odd counts, the middle run's wall time).
    """
    return Measure(
        statistics.median(m.wall for m in runs),
        statistics.median(m.client_cpu for m in runs),
        statistics.median(m.server_cpu for m in runs),
    )


# --- contestants -------------------------------------------------------------------------------


def capplan_collect(pool: Pool, db: Path, parallel: int, names: list[str] | None = None) -> None:
    """
    ``capplan collect`` into a fresh ``db``; every node (of ``names``) ok with windows.
    """
    command = [CAPPLAN, "collect", "-i", str(pool.inventory), "--db", str(db), "--json"]
    command += ["--parallel", str(parallel)]
    for name in names or ():
        command += ["--node", name]
    result = run(command)
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ContestantError(
            f"capplan exit {result.returncode}: {result.stderr.decode()[-800:]}"
        ) from None
    wanted = names or [n.name for n in pool.nodes]
    got = {n["node"]: n for n in doc["nodes"]}
    bad = [
        name
        for name in wanted
        if name not in got or got[name]["status"] != "ok" or not got[name]["windows"] > 0
    ]
    if result.returncode != 0 or doc["failures"] or bad:
        raise ContestantError(
            f"capplan exit {result.returncode}, not ok: {bad[:5]}, failures: {doc['failures'][:3]}"
        )


def capplan_dry_run(pool: Pool, db: Path) -> None:
    result = run([CAPPLAN, "collect", "-i", str(pool.inventory), "--db", str(db), "--dry-run"])
    if result.returncode != 0:
        raise ContestantError(
            f"capplan --dry-run exit {result.returncode}: {result.stderr.decode()}"
        )


def check_outputs(pool: Pool, outputs: dict[str, bytes], what: str, label: str) -> None:
    """
    Every node's output of ``what`` (``probe``, ``read`` or ``both``) is whole.
    """
    for node in pool.nodes:
        out = outputs.get(node.name)
        if out is None:
            raise ContestantError(f"{label}: no output from {node.name}")
        if what == "both":
            probe, mark, data = out.partition(END_MARK + b"\n")
            out = probe + mark
        else:
            data = out
        if what in ("probe", "both") and not out.endswith(END_MARK + b"\n"):
            raise ContestantError(f"{label}: {node.name}'s probe output has no end marker")
        if what in ("read", "both") and len(data) != pool.log_size:
            raise ContestantError(
                f"{label}: {node.name} gave {len(data)} log bytes, not {pool.log_size}"
            )


def parallel_ssh(pool: Pool, command: str, outdir: Path, parallel: int, timeout_s: float) -> None:
    """
    One ``parallel-ssh`` invocation running ``command`` on every node, stdout to ``outdir``.
    """
    result = run(
        [
            PSSH,
            "-h",
            str(pool.hosts),
            "-p",
            str(parallel),
            "-t",
            f"{timeout_s:g}",
            "-x",
            shlex.join(pool.ssh_options()),
            "-o",
            str(outdir),
            command,
        ]
    )
    if result.returncode != 0:
        raise ContestantError(
            f"parallel-ssh exit {result.returncode}: "
            f"{(result.stdout + result.stderr).decode()[-800:]}"
        )


def pssh_outputs(pool: Pool, outdir: Path) -> dict[str, bytes]:
    return {
        n.name: (outdir / f"{pool.lab.user}@{n.server.host}:{n.server.port}").read_bytes()
        for n in pool.nodes
    }


def pssh_split(pool: Pool, work: Path, parallel: int, timeout_s: float) -> None:
    probe, read = pool.shared_commands()
    parallel_ssh(pool, probe, work / "probe", parallel, timeout_s)
    parallel_ssh(pool, read, work / "read", parallel, timeout_s)
    check_outputs(pool, pssh_outputs(pool, work / "probe"), "probe", "parallel-ssh")
    check_outputs(pool, pssh_outputs(pool, work / "read"), "read", "parallel-ssh")


def pssh_joined(pool: Pool, work: Path, parallel: int, timeout_s: float) -> None:
    probe, read = pool.shared_commands()
    parallel_ssh(pool, f"{probe}; {read}", work / "both", parallel, timeout_s)
    check_outputs(pool, pssh_outputs(pool, work / "both"), "both", "parallel-ssh joined")


def serial_loop(pool: Pool, timeout_s: float) -> None:
    """
    ``ssh`` node after node: the probe, then the read, each its own invocation.
    """
    options = [*pool.ssh_options(), "-o", f"ConnectTimeout={timeout_s:g}"]
    probes: dict[str, bytes] = {}
    reads: dict[str, bytes] = {}
    for node in pool.nodes:
        target = [f"{pool.lab.user}@{node.server.host}", "-p", str(node.server.port)]
        for store, command in (
            (probes, probe_command(str(node.proc), str(node.log))),
            (reads, read_command(str(node.log), 0, pool.log_size)),
        ):
            result = run([SSH, "-T", *options, *target, command])
            if result.returncode != 0:
                raise ContestantError(
                    f"ssh {node.name} exit {result.returncode}: {result.stderr[-300:]!r}"
                )
            store[node.name] = result.stdout
    check_outputs(pool, probes, "probe", "serial loop")
    check_outputs(pool, reads, "read", "serial loop")


# --- the run -----------------------------------------------------------------------------------


def start_pool(root: Path, lab: SSHLab, args: argparse.Namespace) -> Pool:
    """
    The pool, or as many nodes as sshd could be started for (said on stderr).
    """
    count = args.nodes
    while True:
        try:
            extra = "" if args.node_bashrc else NO_BASHRC
            return Pool(root / f"pool-{count}", lab, count, args.lines, args.ssh_timeout, extra)
        except RuntimeError as exc:
            started = len(lab.servers)
            lab.close()
            lab.servers.clear()
            if started <= 1 or count <= 1:
                raise
            count = max(1, started - 1)
            print(f"sshd could not start ({exc}); retrying with {count} nodes", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark and print the table.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--lines", type=int, default=20_000, help="access-log lines per node")
    parser.add_argument("--parallel", type=int, default=32, help="capplan and parallel-ssh")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contestant (median)")
    parser.add_argument(
        "--single-sample", type=int, default=10, help="nodes timed alone (0: all of them)"
    )
    parser.add_argument("--ssh-timeout", type=float, default=30.0)
    parser.add_argument(
        "--node-bashrc",
        action="store_true",
        help="let every SSH session source the login user's ~/.bashrc (off: SetEnv SHLVL=1)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 250:
        parser.error("--nodes must be 1..250 (addresses 127.0.0.2 .. 127.0.0.251)")
    if os.geteuid() != 0:
        parser.error("needs root: the sshd servers of tests/collect/sshd.py run as root")
    for tool in (PSSH, SSH, CAPPLAN):
        if not Path(tool).exists():
            parser.error(f"{tool} is missing")
    log = sys.stderr
    root = Path(tempfile.mkdtemp(prefix="capplan-bench-collect-"))
    lab = SSHLab(root / "sshd")
    try:
        print(f"starting {args.nodes} sshd and writing their files ...", file=log)
        pool = start_pool(root, lab, args)
        n = len(pool.nodes)
        k = n if args.single_sample <= 0 else min(args.single_sample, n)
        sample = [pool.nodes[round(i * (n - 1) / max(k - 1, 1))] for i in range(k)]
        sample = list({s.name: s for s in sample}.values())
        times: dict[str, list[Measure]] = {}
        single: dict[str, list[Measure]] = {s.name: [] for s in sample}
        runs = root / "runs"
        for r in range(args.repeat):
            work = runs / str(r)
            work.mkdir(parents=True)
            steps: list[tuple[str, Callable[[], None]]] = [
                ("capplan", partial(capplan_collect, pool, work / "c.db", args.parallel)),
                ("pssh", partial(pssh_split, pool, work, args.parallel, args.ssh_timeout)),
                ("pssh_joined", partial(pssh_joined, pool, work, args.parallel, args.ssh_timeout)),
                ("serial", partial(serial_loop, pool, args.ssh_timeout)),
                ("dry_run", partial(capplan_dry_run, pool, work / "dry.db")),
            ]
            for name, action in steps:
                m = timed(lab, action)
                times.setdefault(name, []).append(m)
                print(
                    f"run {r + 1}/{args.repeat} {name}: {m.wall:.2f} s (client CPU "
                    f"{m.client_cpu:.2f} s, node CPU {m.server_cpu:.2f} s)",
                    file=log,
                )
            for node in sample:
                db = work / f"single-{node.name}.db"
                m = timed(lab, partial(capplan_collect, pool, db, args.parallel, [node.name]))
                single[node.name].append(m)
            worst = max(single, key=lambda nm: median(single[nm]).wall)
            print(
                f"run {r + 1}/{args.repeat} single nodes: slowest so far {worst} "
                f"{median(single[worst]).wall:.2f} s",
                file=log,
            )
            shutil.rmtree(work)
        med = {name: median(values) for name, values in times.items()}
        single_med = {name: median(values) for name, values in single.items()}
        slowest = max(single_med, key=lambda nm: single_med[nm].wall)
        t_single = single_med[slowest].wall
        ours = med["capplan"].wall
        best_pssh = min(med["pssh"].wall, med["pssh_joined"].wall)
        mb = pool.log_size / 1e6
        cores = os.cpu_count() or 1

        print()
        print(
            f"collect: {n} nodes (sshd on 127.0.0.2-127.0.0.{n + 1}) x {args.lines} log lines "
            f"({mb:.2f} MB/node, {mb * n:.0f} MB in all), --parallel {args.parallel}, "
            f"median of {args.repeat}, {cores} cores"
        )
        print(
            f"{'contestant':<50}{'wall s':>8}{'x capplan':>10}{'MB/s':>7}"
            f"{'client CPU s':>14}{'node CPU s':>12}"
        )
        rows = [
            ("capplan collect (1 connection/node, 2 commands)", med["capplan"]),
            ("parallel-ssh, probe then read (2 invocations)", med["pssh"]),
            ("parallel-ssh, probe; read joined (1 invocation)", med["pssh_joined"]),
            ("serial ssh loop (2 ssh per node)", med["serial"]),
            (f"capplan --node, slowest of {len(sample)} alone ({slowest})", single_med[slowest]),
            ("capplan --dry-run (start-up + planning only)", med["dry_run"]),
        ]
        for label, m in rows:
            total = mb if label.startswith("capplan --node") else mb * n
            rate = f"{total / m.wall:>7.1f}" if "dry-run" not in label else f"{'':>7}"
            print(
                f"{label:<50}{m.wall:>8.2f}{m.wall / ours:>10.2f}{rate}"
                f"{m.client_cpu:>14.2f}{m.server_cpu:>12.2f}"
            )
        print(
            "single nodes alone, median wall s: "
            + ", ".join(f"{name} {m.wall:.2f}" for name, m in single_med.items())
        )
        floor = (med["capplan"].client_cpu + med["capplan"].server_cpu) / cores
        print(
            f"capplan's run: (client + node CPU) / {cores} cores = {floor:.2f} s, the least wall "
            f"time this machine allows for that work; node CPU alone / cores = "
            f"{med['capplan'].server_cpu / cores:.2f} s"
        )
        print()
        print(f"capplan / parallel-ssh (probe then read): {ours / med['pssh'].wall:.2f}")
        print(f"capplan / parallel-ssh (joined):          {ours / med['pssh_joined'].wall:.2f}")
        print(f"capplan / slowest single node:            {ours / t_single:.2f}")
        print(f"serial loop / capplan:                    {med['serial'].wall / ours:.2f}")
        print()
        met = "MET" if ours <= best_pssh else "NOT MET"
        print(
            f"target: at least as fast as parallel-ssh: {met} (capplan {ours:.2f} s; parallel-ssh "
            f"{med['pssh'].wall:.2f} s probe then read, {med['pssh_joined'].wall:.2f} s joined; "
            f"{ours / best_pssh:.2f}x the faster)"
        )
        met = "MET" if ours <= 2 * t_single else "NOT MET"
        print(
            f"target: within 2x of the slowest single node: {met} (capplan {ours:.2f} s = "
            f"{ours / t_single:.2f}x of {t_single:.2f} s, {slowest} alone, slowest of "
            f"{len(sample)} sampled)"
        )
        if n < args.nodes:
            print(f"note: only {n} of the {args.nodes} nodes asked for could be started")
        return 0
    finally:
        lab.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
