"""
`capplan fit` and `capplan queue` end to end, in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.status import ExitStatus
from tests.conftest import CLI, EXAMPLES, REFERENCE


@pytest.fixture(scope="module")
def example_fit(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The bundled example, imported and fitted once (JSON)."""
    from capplan.cli import run

    db = tmp_path_factory.mktemp("example") / "capplan.db"
    assert ExitStatus.OK == run(["import", str(EXAMPLES / "web" / "samples.csv"), "--db", str(db)])
    import contextlib
    import io
    import json

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run(
            ["fit", "-i", str(EXAMPLES / "web" / "inventory.yaml"), "--db", str(db), "--json"]
        )
    assert ExitStatus.OK == status
    return {"db": db, "json": json.loads(out.getvalue())}


class TestFitStore:
    def test_json_contract_keys(self, example_fit: dict) -> None:
        """--json: nodes with node, model, params, capacity_rps, capacity_interval, warnings."""
        nodes = example_fit["json"]["nodes"]
        assert ["web-1", "web-2", "web-3", "web-4"] == [n["node"] for n in nodes]
        for n in nodes:
            assert {
                "node",
                "model",
                "params",
                "capacity_rps",
                "capacity_interval",
                "warnings",
            } <= set(n)
            low, high = n["capacity_interval"]
            assert low <= n["capacity_rps"] <= high

    def test_example_recovers_the_generating_model(self, example_fit: dict) -> None:
        """The example's slot counts (2, 4, 8, 8) come back from its windows (generate.py)."""
        nodes = example_fit["json"]["nodes"]
        assert ["mgc"] * 4 == [n["model"] for n in nodes]
        assert [2, 4, 8, 8] == [n["params"]["servers"] for n in nodes]

    def test_what_if_slo(self, cli: CLI, example_fit: dict) -> None:
        """--slo-ms is a what-if: a tighter SLO lowers capacity."""
        result = cli(
            "fit",
            "-i",
            EXAMPLES / "web" / "inventory.yaml",
            "--db",
            example_fit["db"],
            "--node",
            "web-2",
            "--slo-ms",
            "60",
            "--json",
        )
        assert ExitStatus.OK == result.status
        [node] = result.json["nodes"]
        base = {n["node"]: n for n in example_fit["json"]["nodes"]}["web-2"]
        assert node["capacity_rps"] < base["capacity_rps"]
        assert 60 == result.json["slo"]["latency_ms"]

    def test_parallel_batches_same_json(
        self, cli: CLI, example_fit: dict, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--parallel 2 over batches of one node: the same document as the one-batch fit."""
        import capplan.models.parallel

        monkeypatch.setattr(capplan.models.parallel, "BATCH_NODES", 1)
        args = ("fit", "-i", EXAMPLES / "web" / "inventory.yaml", "--db", example_fit["db"])
        result = cli(*args, "--parallel", "2", "--json")
        assert ExitStatus.OK == result.status
        assert example_fit["json"] == result.json
        assert 2 == cli(*args, "--parallel", "0").status  # at least one process

    def test_arrivals_behind_the_balancer(
        self, cli: CLI, example_fit: dict, tmp_path: Path
    ) -> None:
        """
        arrivals: round_robin reads each window as the node's share of the pool's stream: the
        example's Poisson windows then mean slower M/G/c stations (lower capacities), also
        for --node.
        """
        text = (EXAMPLES / "web" / "inventory.yaml").read_text(encoding="utf-8")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(text.replace("arrivals: poisson", "arrivals: round_robin"))
        assert "poisson" == example_fit["json"]["arrivals"]
        db = example_fit["db"]
        mgc = ("--db", db, "--model", "mgc", "--json")
        poisson = cli("fit", "-i", EXAMPLES / "web" / "inventory.yaml", *mgc)
        result = cli("fit", "-i", inventory, *mgc)
        assert ExitStatus.OK == result.status
        assert "round_robin" == result.json["arrivals"]
        before = {n["node"]: n["capacity_rps"] for n in poisson.json["nodes"]}
        after = {n["node"]: n["capacity_rps"] for n in result.json["nodes"]}
        assert all(after[n] < before[n] for n in before)
        one = cli("fit", "-i", inventory, "--node", "web-1", *mgc)
        assert after["web-1"] == one.json["nodes"][0]["capacity_rps"]
        table = cli("fit", "-i", inventory, "--db", db)
        assert "arrivals: round_robin" in table.stdout

    @pytest.mark.parametrize("arrivals", ["least_connections", "shortest_expected_delay"])
    def test_arrivals_behind_least_connections(
        self, cli: CLI, example_fit: dict, tmp_path: Path, arrivals: str
    ) -> None:
        """
        arrivals: least_connections and shortest_expected_delay fit the pool with its queue:
        every node's workers are required (exit 2 naming the node without), --node gives the
        pool fit's answer, the table's caption says how the windows were read.
        """
        text = (EXAMPLES / "web" / "inventory.yaml").read_text(encoding="utf-8")
        text = text.replace("arrivals: poisson", f"arrivals: {arrivals}")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(text)
        db = example_fit["db"]
        refused = cli("fit", "-i", inventory, "--db", db, "--json")
        assert ExitStatus.BAD_INPUT == refused.status
        assert "node 'web-1' has no workers" in refused.stderr
        for name, c in (("web-1", 2), ("web-2", 4), ("web-3", 8), ("web-4", 8)):
            text = text.replace(f"name: {name},", f"name: {name}, workers: {c},")
        inventory.write_text(text)
        result = cli("fit", "-i", inventory, "--db", db, "--model", "mgc", "--json")
        assert ExitStatus.OK == result.status
        assert arrivals == result.json["arrivals"]
        nodes = {n["node"]: n for n in result.json["nodes"]}
        assert [2, 4, 8, 8] == [nodes[f"web-{i}"]["params"]["servers"] for i in range(1, 5)]
        one = cli("fit", "-i", inventory, "--db", db, "--model", "mgc", "--node", "web-2", "--json")
        assert nodes["web-2"]["capacity_rps"] == one.json["nodes"][0]["capacity_rps"]
        table = cli("fit", "-i", inventory, "--db", db, "--model", "mgc")
        assert f"arrivals: {arrivals}" in " ".join(table.stdout.split())

    def test_progress_bar_on_a_terminal(
        self, example_fit: dict, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a terminal, a pool of several batches shows a bar of the nodes fitted."""
        import io

        from rich.console import Console

        import capplan.cli
        import capplan.models.parallel
        from capplan.cli import run

        screen = io.StringIO()
        monkeypatch.setattr(capplan.models.parallel, "BATCH_NODES", 1)
        monkeypatch.setattr(
            capplan.cli, "_stdout", lambda: Console(file=screen, force_terminal=True, width=100)
        )
        args = ["fit", "-i", str(EXAMPLES / "web" / "inventory.yaml"), "--db"]
        assert ExitStatus.OK == run([*args, str(example_fit["db"]), "--parallel", "1"])
        text = screen.getvalue()
        assert "fitting" in text
        assert "4/4" in text
        assert "web-4" in text  # the table follows

    def test_least_connections_over_batches_and_processes(
        self, cli: CLI, example_fit: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Least connections fit the pool six times (its rounds): in batches over two worker
        processes the answers are those of one process, and on a terminal the bar counts
        every pass (4 nodes × 6).
        """
        import io

        from rich.console import Console

        import capplan.cli
        import capplan.models.parallel
        from capplan.cli import run

        text = (EXAMPLES / "web" / "inventory.yaml").read_text(encoding="utf-8")
        text = text.replace("arrivals: poisson", "arrivals: least_connections")
        for name, c in (("web-1", 2), ("web-2", 4), ("web-3", 8), ("web-4", 8)):
            text = text.replace(f"name: {name},", f"name: {name}, workers: {c},")
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(text)
        db = example_fit["db"]
        alone = cli("fit", "-i", inventory, "--db", db, "--parallel", "1", "--json")
        monkeypatch.setattr(capplan.models.parallel, "BATCH_NODES", 1)
        spread = cli("fit", "-i", inventory, "--db", db, "--parallel", "2", "--json")
        assert ExitStatus.OK == spread.status
        assert alone.json["nodes"] == spread.json["nodes"]
        screen = io.StringIO()
        monkeypatch.setattr(
            capplan.cli, "_stdout", lambda: Console(file=screen, force_terminal=True, width=100)
        )
        assert ExitStatus.OK == run(["fit", "-i", str(inventory), "--db", str(db)])
        shown = screen.getvalue()
        assert "fitting (6 passes)" in shown
        assert "24/24" in shown

    def test_unknown_node(self, cli: CLI, example_fit: dict) -> None:
        """An unknown --node exits 2 and lists the nodes."""
        result = cli("fit", "--db", example_fit["db"], "--node", "web-9")
        assert ExitStatus.BAD_INPUT == result.status
        assert (
            "capplan: --node: unknown node 'web-9' (nodes: web-1, web-2, web-3, web-4)"
            in result.stderr
        )

    def test_empty_store(self, cli: CLI, tmp_path: Path) -> None:
        """Fitting with no store says what to run first."""
        result = cli("fit", "--db", tmp_path / "none.db")
        assert ExitStatus.FAILURE == result.status
        assert "run `capplan import FILE.csv`" in result.stderr


class TestFitCSV:
    def test_raytracer_first_six_rows(self, cli: CLI, tmp_path: Path) -> None:
        """USL on the R usl package's raytracer rows 1-6: σ 0.02444, κ 0.00163, λ 20.85605."""
        rows = (REFERENCE / "usl-raytracer.csv").read_text().splitlines()[:7]
        table = tmp_path / "ray6.csv"
        table.write_text("\n".join(rows) + "\n")
        result = cli("fit", "--csv", table, "--model", "usl", "--json")
        assert ExitStatus.OK == result.status
        doc = result.json
        assert "usl" == doc["model"]
        assert (0.02444, 0.00163, 20.85605) == (
            round(doc["params"]["sigma"], 5),
            round(doc["params"]["kappa"], 5),
            round(doc["params"]["lambda"], 5),
        )
        assert {"model", "params", "stderr", "peak_load", "max_throughput", "r2"} <= set(doc)

    def test_table_with_bad_row(self, cli: CLI, tmp_path: Path) -> None:
        """A bad row in the table exits 2 with its line."""
        table = tmp_path / "t.csv"
        table.write_text("load,throughput\n1,20\n2,abc\n")
        result = cli("fit", "--csv", table)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{table}:3: throughput: 'abc' is not a number" in result.stderr

    def test_other_model_refused(self, cli: CLI, tmp_path: Path) -> None:
        """--csv takes the USL only."""
        table = tmp_path / "t.csv"
        table.write_text("load,throughput\n1,20\n")
        assert ExitStatus.BAD_INPUT == cli("fit", "--csv", table, "--model", "mgc").status


class TestQueue:
    def test_json_contract(self, cli: CLI) -> None:
        """--json carries the contract keys; A = 10 Erlangs on 14 servers waits with P 0.174132."""
        result = cli("queue", "--servers", "14", "--service-ms", "1000", "--rate", "10", "--json")
        assert ExitStatus.OK == result.status
        doc = result.json
        assert {
            "servers",
            "utilization",
            "p_wait",
            "mean_wait_ms",
            "mean_response_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
        } <= set(doc)
        assert 0.174132 == round(doc["p_wait"], 6)

    def test_mm10_percentiles(self, cli: CLI) -> None:
        """M/M/10 at λ = 8/s, 1 s service: p50 0.9121 s, p99 4.9461 s (reference README)."""
        doc = cli("queue", "-c", "10", "-s", "1000", "-r", "8", "--json").json
        assert (912.1, 4946.1) == (round(doc["p50_ms"], 1), round(doc["p99_ms"], 1))

    def test_unstable_exits_5(self, cli: CLI) -> None:
        """At utilization ≥ 1 the queue is unstable: exit 5, and the stable rate is named."""
        result = cli("queue", "--servers", "2", "--service-ms", "100", "--rate", "20")
        assert ExitStatus.INFEASIBLE == result.status
        assert "unstable" in result.stderr
        assert "20" in result.stderr

    def test_bad_percentiles(self, cli: CLI) -> None:
        """A percentile outside (0, 100) exits 2."""
        result = cli("queue", "-c", "2", "-s", "10", "-r", "5", "--percentiles", "50,100")
        assert ExitStatus.BAD_INPUT == result.status
        assert "--percentiles" in result.stderr

    def test_table_output(self, cli: CLI) -> None:
        """Without --json a table with P(wait) is printed."""
        result = cli("queue", "-c", "2", "-s", "10", "-r", "100")
        assert ExitStatus.OK == result.status
        assert "P(wait)" in result.stdout


def test_least_connections_rule_of_another_balancer_gets_a_note(
    cli: CLI, example_fit: dict, tmp_path: Path
) -> None:
    """
    An inventory whose balancers are all HAProxy but whose windows are read with nginx's least
    connections rule (or all nginx, read with HAProxy's) gets a note naming the other value;
    the matching rule, or balancers of both kinds, none.
    """
    text = (EXAMPLES / "web" / "inventory.yaml").read_text(encoding="utf-8")
    for name, c in (("web-1", 2), ("web-2", 4), ("web-3", 8), ("web-4", 8)):
        text = text.replace(f"name: {name},", f"name: {name}, workers: {c},")
    nginx_line = "  - {kind: nginx, name: web_backend, output: out/nginx-web.conf}\n"
    haproxy_line = "  - {kind: haproxy, name: web, output: out/haproxy-web.cfg}\n"
    assert nginx_line in text
    assert haproxy_line in text
    inventory = tmp_path / "inventory.yaml"

    def note(arrivals: str, drop: str) -> str:
        said = text.replace("arrivals: poisson", f"arrivals: {arrivals}").replace(drop, "")
        inventory.write_text(said)
        result = cli("fit", "-i", inventory, "--db", example_fit["db"], "--model", "mgc")
        assert ExitStatus.OK == result.status
        return " ".join(result.stderr.split())

    assert "set arrivals: shortest_expected_delay" in note("least_connections", nginx_line)
    assert "set arrivals: least_connections" in note("shortest_expected_delay", haproxy_line)
    assert "note" not in note("shortest_expected_delay", nginx_line)
    assert "note" not in note("least_connections", haproxy_line)
    assert "note" not in note("least_connections", "")


def test_unsaid_arrivals_get_a_note(cli: CLI, example_fit: dict, tmp_path: Path) -> None:
    """
    An inventory that lists balancers but not how its windows were measured is read as Poisson
    with a note on stderr (not under --json); saying it, even poisson, silences the note.
    """
    text = (EXAMPLES / "web" / "inventory.yaml").read_text(encoding="utf-8")
    unsaid = tmp_path / "inventory.yaml"
    unsaid.write_text("\n".join(ln for ln in text.splitlines() if "arrivals:" not in ln) + "\n")
    args = ("fit", "--db", example_fit["db"])
    noted = cli(*args, "-i", unsaid)
    assert ExitStatus.OK == noted.status
    assert "does not say how the windows were measured" in noted.stderr
    said = " ".join(noted.stderr.split())
    assert "least_connections (nginx's least_conn, LVS's wlc)" in said
    assert "shortest_expected_delay (HAProxy's leastconn)" in said
    assert "does not say" not in cli(*args, "-i", unsaid, "--json").stderr
    assert "does not say" not in cli(*args, "-i", EXAMPLES / "web" / "inventory.yaml").stderr
    assert cli(*args, "-i", unsaid, "--json").json == example_fit["json"]
