"""
`capplan plan` end to end on the bundled example: the JSON contract, every month's fleet
checked against the losses it must survive, forecasts from growth and from histories,
what-ifs, and the errors.
"""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from capplan.inventory import load_inventory
from capplan.plan.build import policy_of
from capplan.plan.fleet import surviving
from capplan.status import ExitStatus
from tests.conftest import CLI, EXAMPLES, Result

AT = "2026-11-23T00:00:00Z"


@pytest.fixture
def example(tmp_path: Path, cli: CLI) -> tuple[Path, Path]:
    """The example inventory in a scratch folder, and a store with its windows."""
    shutil.copy(EXAMPLES / "web" / "inventory.yaml", tmp_path / "inventory.yaml")
    db = tmp_path / "capplan.db"
    assert ExitStatus.OK == cli("import", EXAMPLES / "web" / "samples.csv", "--db", db).status
    return tmp_path / "inventory.yaml", db


def plan(cli: CLI, example: tuple[Path, Path], *args: str) -> dict:
    inventory, db = example
    result = cli("plan", "-i", inventory, "--db", db, "--at", AT, "--json", *args)
    assert ExitStatus.OK == result.status, result.stderr
    return result.json


class TestPlan:
    def test_json_contract_and_every_month_survives(self, cli: CLI, example: tuple) -> None:
        """
        months carry load bands, nodes per kind and zone, cost and binding; each month's
        fleet serves the month's high band after losing any zone or any one node.
        """
        doc = plan(cli, example, "--growth", "6%/month", "--horizon", "6")
        assert 600 == doc["load_rps"]
        assert 6 == len(doc["months"])
        inventory = load_inventory(example[0])
        policy = policy_of(inventory.planning)
        caps = {k["kind"]: k["capacity_rps"] for k in doc["kinds"]}
        assert "stated in the inventory" == next(
            k["source"] for k in doc["kinds"] if k["kind"] == "xlarge"
        )
        previous: dict = {}
        for i, month in enumerate(doc["months"], start=1):
            assert {"month", "load_rps", "nodes", "cost_per_month", "binding"} <= set(month)
            assert month["load_rps"]["median"] == pytest.approx(600 * 1.06**i)
            nodes = [
                (zone, caps[kind])
                for kind, zones in month["nodes"].items()
                for zone, n in zones.items()
                for _ in range(n)
            ]
            for scenario, left in surviving(nodes, inventory.zones, policy):
                assert month["load_rps"]["high"] <= 0.7 * left + 1e-6, (i, scenario)
            for kind, zones in previous.items():
                for zone, n in zones.items():
                    assert month["nodes"].get(kind, {}).get(zone, 0) >= n
            previous = month["nodes"]
            assert month["binding"].startswith(("loss of zone", "loss of any 1 node"))
        # today's pool cannot take 600 rps after losing a zone: exhausted now, order now
        assert doc["exhaustion"]["early"] == AT
        assert doc["order_by"] is not None
        assert doc["order_by"] <= AT
        assert doc["fleet"]["total_cost"] == pytest.approx(
            sum(m["cost_per_month"] for m in doc["months"]), abs=0.05
        )

    def test_pool_in_words_and_orders(self, cli: CLI, example: tuple) -> None:
        """The table output names the binding loss and the orders to place."""
        inventory, db = example
        result = cli("plan", "-i", inventory, "--db", db, "--at", AT, "--growth", "6%/month")
        assert ExitStatus.OK == result.status, result.stderr
        assert "in its worst loss: loss of zone" in result.stdout
        assert "order " in result.stdout
        assert "Cost over the horizon" in result.stdout

    def test_exhaustion_dates_from_growth(self, cli: CLI, example: tuple) -> None:
        """
        From a small load the pool runs out when the compound growth crosses what it serves
        (no interval on growth: the three dates are close; early ≤ median ≤ late).
        """
        doc = plan(cli, example, "--load", "100", "--growth", "10%/month", "--horizon", "24")
        usable = doc["pool"]["usable_rps"]
        ex = doc["exhaustion"]
        assert ex["early"] <= ex["median"] <= ex["late"]
        months = math.log(usable["point"] / 100) / math.log(1.1)
        crossing = datetime(2026, 11, 23, tzinfo=UTC) + timedelta(days=30.4375 * months)
        median = datetime.fromisoformat(ex["median"].replace("Z", "+00:00"))
        assert abs((median - crossing).days) <= 1

    def test_history_csv_forecast(self, cli: CLI, example: tuple, tmp_path: Path) -> None:
        """A time,rps history gives an ETS forecast with a band that the months carry."""
        start = datetime(2026, 5, 1, tzinfo=UTC)
        lines = ["time,rps"]
        for day in range(200):
            for hour in (3, 15):
                rps = 150 * 1.003**day * (1.3 if hour == 15 else 0.7) * (1 + 0.05 * (day % 3))
                t = start + timedelta(days=day, hours=hour)
                lines.append(f"{t.isoformat()},{rps:.1f}")
        history = tmp_path / "history.csv"
        history.write_text("\n".join(lines) + "\n")
        doc = plan(cli, example, "--history", str(history), "--horizon", "3")
        assert "ets" == doc["forecast"]["method"]
        for month in doc["months"]:
            band = month["load_rps"]
            assert band["low"] < band["median"] < band["high"]

    def test_store_history_is_short_so_flat(self, cli: CLI, example: tuple) -> None:
        """The example store spans two days: a flat forecast at its peak, said in a note."""
        doc = plan(cli, example, "--history", "store", "--horizon", "2")
        assert "flat" == doc["forecast"]["method"]
        assert any("14 days" in n or "flat" in n for n in doc["notes"])

    def test_what_if_remove_and_add(self, cli: CLI, example: tuple) -> None:
        """Removing a node lowers what today's pool serves; adding nodes raises it."""
        base = plan(cli, example, "--horizon", "1")["pool"]["usable_rps"]["point"]
        fewer = plan(cli, example, "--horizon", "1", "--remove", "web-4")
        more = plan(cli, example, "--horizon", "1", "--add", "xlarge@a=1", "--add", "xlarge@b=1")
        assert 3 == fewer["pool"]["nodes"]
        assert fewer["pool"]["usable_rps"]["point"] < base
        assert 6 == more["pool"]["nodes"]
        assert more["pool"]["usable_rps"]["point"] > base


class TestErrors:
    def test_unknown_node_to_remove(self, cli: CLI, example: tuple) -> None:
        inventory, db = example
        result = cli("plan", "-i", inventory, "--db", db, "--remove", "web-9")
        assert ExitStatus.BAD_INPUT == result.status
        assert "--remove: unknown node 'web-9'" in result.stderr

    def test_growth_and_history_together(self, cli: CLI, example: tuple) -> None:
        inventory, db = example
        result = cli(
            "plan", "-i", inventory, "--db", db, "--growth", "5%/month", "--history", "store"
        )
        assert ExitStatus.BAD_INPUT == result.status
        assert "give one of them" in result.stderr

    def test_bad_growth(self, cli: CLI, example: tuple) -> None:
        inventory, db = example
        result = cli("plan", "-i", inventory, "--db", db, "--growth", "lots")
        assert ExitStatus.BAD_INPUT == result.status
        assert "8%/month" in result.stderr

    def test_undeclared_kind_names_the_line(self, cli: CLI, example: tuple) -> None:
        inventory, db = example
        text = inventory.read_text().replace("kind: small, zone: a", "kind: tiny, zone: a")
        inventory.write_text(text)
        result = cli("plan", "-i", inventory, "--db", db)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{inventory}:8: nodes.0.kind: kind 'tiny' is not declared" in result.stderr

    def test_zone_survival_impossible_is_infeasible(self, cli: CLI, example: tuple) -> None:
        """Every kind in one zone cannot survive that zone's loss: exit 5, saying so."""
        inventory, db = example
        text = inventory.read_text()
        for kind in ("small", "medium", "large"):
            text = text.replace(
                f"  {kind}: {{price_per_hour:", f"  {kind}: {{zones: [a], price_per_hour:"
            )
        text = text.replace("zones: [a, b], capacity_rps: 420", "zones: [a], capacity_rps: 420")
        inventory.write_text(text)
        result = cli("plan", "-i", inventory, "--db", db, "--at", AT)
        assert ExitStatus.INFEASIBLE == result.status
        assert "after losing zone a the fleet cannot grow (no kind runs outside it)" in (
            result.stderr
        )


class TestPlanFile:
    """
    `capplan plan --out plan.yaml` adds the capacity section; `capplan optimize` keeps it,
    uses it in the scale-out reason, and `render` still reads the plan.
    """

    @staticmethod
    def _optimize(cli: CLI, example: tuple[Path, Path], *args: str) -> Result:
        inventory, db = example
        plan_file = inventory.parent / "plan.yaml"
        return cli("optimize", "-i", inventory, "--db", db, "--out", plan_file, *args)

    def test_round_trip(self, cli: CLI, example: tuple[Path, Path]) -> None:
        from capplan.planfile import load_plan

        inventory, _ = example
        plan_file = inventory.parent / "plan.yaml"
        assert ExitStatus.OK == self._optimize(cli, example).status
        before = load_plan(plan_file)
        assert before.capacity is None
        doc = plan(cli, example, "--growth", "8%/month", "--horizon", "4", "--out", str(plan_file))
        assert [str(plan_file)] == doc["files"]
        after = load_plan(plan_file)
        assert after.capacity is not None
        # everything optimize wrote is unchanged; the capacity section is the JSON's months
        assert before == after.model_copy(update={"capacity": None})
        months = after.capacity.months
        assert [m.month for m in months] == [m["month"] for m in doc["months"]]
        for month, entry in zip(months, doc["months"], strict=True):
            assert month.load_rps.high == pytest.approx(entry["load_rps"]["high"], rel=1e-5)
            assert month.nodes == entry["nodes"]
            assert month.binding == entry["binding"]
        assert after.capacity.order_by is not None
        assert after.capacity.order_by.isoformat().startswith(doc["order_by"][:10])

        # the plan changed optimize's inputs: --check sees drift, optimize brings it in
        check = self._optimize(cli, example, "--check")
        assert ExitStatus.DRIFT == check.status
        assert ExitStatus.OK == self._optimize(cli, example).status
        final = load_plan(plan_file)
        assert final.capacity == after.capacity, "optimize lost or changed the capacity plan"
        reason = final.pool.reasons["scale_out_load_rps"]
        assert "without zone" in reason  # the inventory's planning: survive a zone
        assert "the capacity plan's high forecast reaches it in the month from 2026-11-23" in (
            reason
        )
        assert ExitStatus.OK == self._optimize(cli, example, "--check").status
        rendered = cli("render", plan_file, "--target", "nginx", "-o", inventory.parent / "n.conf")
        assert ExitStatus.OK == rendered.status, rendered.stderr

    def test_needs_a_plan_file(self, cli: CLI, example: tuple[Path, Path]) -> None:
        inventory, db = example
        missing = inventory.parent / "plan.yaml"
        result = cli("plan", "-i", inventory, "--db", db, "--out", missing)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{missing}: no plan.yaml to add the capacity plan to" in result.stderr
        assert "capplan optimize -i" in result.stderr
        assert not missing.exists()

    def test_what_ifs_are_not_recorded(self, cli: CLI, example: tuple[Path, Path]) -> None:
        inventory, db = example
        assert ExitStatus.OK == self._optimize(cli, example).status
        plan_file = inventory.parent / "plan.yaml"
        before = plan_file.read_bytes()
        result = cli("plan", "-i", inventory, "--db", db, "--remove", "web-1", "--out", plan_file)
        assert ExitStatus.BAD_INPUT == result.status
        assert "--remove is a what-if, and --out records the plan" in result.stderr
        assert before == plan_file.read_bytes()

    def test_another_clusters_plan(self, cli: CLI, example: tuple[Path, Path]) -> None:
        inventory, db = example
        assert ExitStatus.OK == self._optimize(cli, example).status
        plan_file = inventory.parent / "plan.yaml"
        plan_file.write_text(plan_file.read_text().replace("cluster: web", "cluster: api"))
        before = plan_file.read_bytes()
        result = cli("plan", "-i", inventory, "--db", db, "--at", AT, "--out", plan_file)
        assert ExitStatus.BAD_INPUT == result.status
        assert "the plan is for cluster 'api', the inventory for 'web'" in result.stderr
        assert before == plan_file.read_bytes()

    def test_broken_capacity_section_is_not_overwritten(
        self, cli: CLI, example: tuple[Path, Path]
    ) -> None:
        """optimize would lose a capacity section it cannot read: it stops at its line."""
        inventory, _ = example
        assert ExitStatus.OK == self._optimize(cli, example).status
        plan(cli, example, "--out", str(inventory.parent / "plan.yaml"))
        plan_file = inventory.parent / "plan.yaml"
        text = plan_file.read_text().replace("plan_for: high", "plan_for: highest")
        plan_file.write_text(text)
        line = text.splitlines().index("  plan_for: highest") + 1
        result = self._optimize(cli, example)
        assert ExitStatus.BAD_INPUT == result.status
        assert f"{plan_file}:{line}: capacity.plan_for:" in result.stderr
        assert text == plan_file.read_text()
