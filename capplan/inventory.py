"""
The inventory and profile files: loading and validation (a DESIGN.md contract).

Every error names the file, the line and the key: ``inventory.yaml:12: nodes.1.address: ...``.
Unknown keys are refused (a typo must not be ignored silently).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from capplan.collect.prometheus import PrometheusNode, PrometheusSettings
from capplan.errors import InputError
from capplan.files import read_input
from capplan.names import check_address, check_host, check_name, check_remote_path
from capplan.planfile import check_balancer_name, check_output_path
from capplan.yamlfile import Located, load_yaml

__all__ = [
    "SLO",
    "Balancer",
    "Inventory",
    "KindSpec",
    "LogSpec",
    "Methods",
    "Node",
    "Planning",
    "Prices",
    "Profile",
    "SLOSpec",
    "SSHSettings",
    "builtin_profiles",
    "effective_slo",
    "load_inventory",
    "load_profile",
    "parse_inventory",
    "parse_profile",
]

Name = Annotated[str, AfterValidator(check_name)]
Address = Annotated[str, AfterValidator(check_address)]
RemotePath = Annotated[str, AfterValidator(check_remote_path)]


def _check_node_host(value: str) -> str:
    return value if value == "local" else check_host(value)


NodeHost = Annotated[str, AfterValidator(_check_node_host)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SLOSpec(_Strict):
    """
    The latency SLO as written in a file; any key may be left to the profile.
    """

    percentile: float | None = Field(None, gt=0, lt=100)
    latency_ms: float | None = Field(None, gt=0)
    max_error_rate: float | None = Field(None, ge=0, le=1)


@dataclass(frozen=True)
class SLO:
    """
    The effective SLO: a latency percentile bound and an error-rate bound.
    """

    percentile: float
    latency_ms: float
    max_error_rate: float

    @property
    def label(self) -> str:
        """
        ``p99``, ``p99.9``: the percentile's short name.
        """
        return f"p{self.percentile:g}"


class SSHSettings(_Strict):
    """
    How to reach nodes over SSH (pool-wide, or per node as overrides).
    """

    user: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    identity_file: str | None = None
    known_hosts: str | None = None
    config_file: str | None = None
    timeout_s: float | None = Field(None, gt=0)


class LogSpec(_Strict):
    """
    Where a node's access log is and how to read it.
    """

    path: RemotePath
    format: Literal["nginx", "haproxy", "regex"] = "nginx"
    log_format: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _regex_needed(self) -> LogSpec:
        if self.format == "regex" and not self.regex:
            raise ValueError("format regex needs a 'regex' with named groups")
        return self


class Node(_Strict):
    """
    One server of the pool.
    """

    name: Name
    host: NodeHost | None = None
    address: Address
    ssh: SSHSettings | None = None
    log: LogSpec | None = None
    proc_dir: RemotePath = "/proc"
    haproxy_socket: RemotePath | None = None
    workers: int | None = Field(None, ge=1, le=1_000_000)
    kind: Name | None = None
    zone: Name | None = None
    labels: dict[Name, str] = Field(default_factory=dict)
    prometheus: PrometheusNode | None = None


class Balancer(_Strict):
    """
    A balancer whose config capplan writes.
    """

    kind: Literal["nginx", "haproxy", "keepalived", "ipvsadm"]
    name: str = Field(min_length=1, max_length=253)
    output: Annotated[str, AfterValidator(check_output_path)] | None = None

    @model_validator(mode="after")
    def _name_fits_kind(self) -> Balancer:
        # nginx upstream / HAProxy backend names; LVS balancers are named by IP:PORT
        check_balancer_name(self.kind, self.name)
        return self


class Prices(_Strict):
    """
    A node kind's prices per hour, by price model.
    """

    on_demand: float = Field(gt=0, allow_inf_nan=False)
    reserved: float | None = Field(None, gt=0, allow_inf_nan=False)
    spot: float | None = Field(None, gt=0, allow_inf_nan=False)


class KindSpec(_Strict):
    """
    A node kind for planning: prices, where it runs, how long it takes to get, and (for a kind
    with no fitted node) its capacity at the SLO.
    """

    price_per_hour: Prices
    zones: list[Name] | None = None  # default: every zone of the inventory
    lead_time_days: float = Field(0.0, ge=0, le=3650, allow_inf_nan=False)
    capacity_rps: float | None = Field(None, gt=0, allow_inf_nan=False)


class Planning(_Strict):
    """
    What the fleet must survive, how hard it may run, and how nodes are bought.
    """

    target_utilization: float = Field(0.7, gt=0, le=1)
    n_plus: int = Field(0, ge=0, le=100)
    survive: Literal["zone"] | None = None
    max_spot_share: float = Field(0.0, ge=0, le=1)
    price_model: Literal["on_demand", "reserved"] = "on_demand"


class Inventory(_Strict):
    """
    The pool: its nodes, SLO, balancers, and (for planning) node kinds and zones.
    """

    cluster: Name
    profile: str = "balanced"
    load_rps: float | None = Field(None, gt=0)
    #: How the windows' requests arrived: ``poisson`` (each node driven alone, or at random),
    #: or measured behind the pool's balancer: ``round_robin``, ``least_connections`` (nginx's
    #: ``least_conn``, LVS's ``lc``/``wlc``) or ``shortest_expected_delay`` (HAProxy's
    #: ``leastconn``, LVS's ``sed``/``nq``, a balancer that queues requests itself).
    #: Unset: read as ``poisson``, and the commands that fit say so once.
    arrivals: (
        Literal["poisson", "round_robin", "least_connections", "shortest_expected_delay"] | None
    ) = None
    slo: SLOSpec = Field(default_factory=SLOSpec)
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    nodes: list[Node] = Field(min_length=1)
    balancers: list[Balancer] = Field(default_factory=list)
    kinds: dict[Name, KindSpec] = Field(default_factory=dict)
    zones: list[Name] = Field(default_factory=list)
    planning: Planning = Field(default_factory=Planning)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)

    @property
    def arrival_model(self) -> str:
        """
        How the fit reads the windows: ``arrivals``, else ``poisson``.
        """
        return self.arrivals or "poisson"

    def node(self, name: str) -> Node:
        """
        The node called ``name`` (KeyError when there is none).
        """
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


class Profile(_Strict):
    """
    A named set of defaults and policy choices (``profiles/*.yaml``).
    """

    name: Name
    description: str = ""
    slo: SLOSpec = Field(default_factory=SLOSpec)
    objective: Literal["mean", "percentile"] = "percentile"
    headroom: float = Field(0.2, ge=0, lt=1)
    utilization_ceiling: float = Field(0.8, gt=0, le=1)
    methods: Methods = Field(default_factory=lambda: Methods())
    detection_s: float = Field(10.0, gt=0, le=3600)
    check_interval_s: float = Field(2.0, ge=0.5, le=600)
    slowstart_s: int = Field(30, ge=0, le=3600)
    idle_nodes: Literal["down", "backup"] = "backup"
    alert_for_s: int = Field(300, ge=0, le=86400)  # Prometheus `for:` of the SLO alerts
    load_alert_for_s: int = Field(900, ge=0, le=86400)  # `for:` of the load thresholds' alerts
    alert_window_s: int = Field(300, ge=10, le=86400)  # the rate() window of the alert rules


class Methods(_Strict):
    """
    The balancing method per balancer kind (each balancer's own name for it); ``auto``:
    round robin or least connections, whichever suits how much the nodes' service times vary
    (``capplan.optimize.build.choose_methods``).
    """

    nginx: Literal["auto", "least_conn", "round_robin"] = "auto"
    haproxy: Literal["auto", "leastconn", "roundrobin", "static-rr"] = "auto"
    ipvsadm: Literal["auto", "wlc", "wrr", "sed", "lc", "rr", "nq"] = "auto"
    keepalived: Literal["auto", "wlc", "wrr", "sed", "lc", "rr", "nq"] = "auto"


DEFAULT_SLO = SLO(percentile=99.0, latency_ms=250.0, max_error_rate=0.001)


def effective_slo(*specs: SLOSpec | None) -> SLO:
    """
    Merge SLO specs key by key, the first one that sets a key winning.

    Call as ``effective_slo(cli_override, inventory.slo, profile.slo)``; keys nobody sets take
    DEFAULT_SLO's values (p99 within 250 ms, errors at most 0.1%).
    """
    values: dict[str, float] = {}
    for spec in specs:
        if spec is None:
            continue
        for key in ("percentile", "latency_ms", "max_error_rate"):
            value = getattr(spec, key)
            if value is not None and key not in values:
                values[key] = value
    return SLO(
        percentile=values.get("percentile", DEFAULT_SLO.percentile),
        latency_ms=values.get("latency_ms", DEFAULT_SLO.latency_ms),
        max_error_rate=values.get("max_error_rate", DEFAULT_SLO.max_error_rate),
    )


def _errors_to_input(exc: ValidationError, located: Located) -> InputError:
    """
    Turn pydantic's first error into ``FILE:LINE: key: problem``.
    """
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or None
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        hint = "check the spelling; the README lists every key"
    elif first["type"] == "missing":
        message = "required, but missing"
        hint = "add it; the README's inventory section shows every key"
    elif message.endswith(")") and " (" in message:
        # a validator's own advice, written as a trailing "(...)": it is the hint
        message, _, advice = message.rpartition(" (")
        hint = advice[:-1]
    else:
        hint = "the README's inventory section lists every key and its values"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return InputError(message, file=located.file, line=located.line_of(loc), key=key, hint=hint)


def _check_unique(located: Located, inventory: Inventory) -> None:
    for field in ("name", "address"):
        seen: dict[str, int | None] = {}
        for i, node in enumerate(inventory.nodes):
            value = getattr(node, field)
            line = located.line_of(("nodes", i, field))
            if value in seen:
                raise InputError(
                    f"{value!r} is already the {field} of the node on line {seen[value]}",
                    file=located.file,
                    line=line,
                    key=f"nodes.{i}.{field}",
                    hint=f"every node needs its own {field}",
                )
            seen[value] = line


def _check_planning(located: Located, inventory: Inventory) -> None:
    """
    Kinds and zones must name each other: a node's kind is declared, zones are listed; LVS
    needs IP real servers; ``arrivals: least_connections`` (or ``shortest_expected_delay``)
    needs every node's workers.
    """
    zones = set(inventory.zones)

    def fail(problem: str, loc: tuple[str | int, ...], hint: str) -> None:
        raise InputError(
            problem,
            file=located.file,
            line=located.line_of(loc),
            key=".".join(str(p) for p in loc),
            hint=hint,
        )

    if len(zones) != len(inventory.zones):
        fail("a zone is listed twice", ("zones",), "list each zone once")
    for name, kind in inventory.kinds.items():
        for i, zone in enumerate(kind.zones or ()):
            if zone not in zones:
                fail(
                    f"zone {zone!r} is not in the inventory's zones",
                    ("kinds", name, "zones", i),
                    "add it to `zones:` or fix the spelling",
                )
    for i, node in enumerate(inventory.nodes):
        if inventory.kinds and node.kind is not None and node.kind not in inventory.kinds:
            fail(
                f"kind {node.kind!r} is not declared under `kinds:`",
                ("nodes", i, "kind"),
                "declare it with its prices, or fix the spelling",
            )
        if zones and node.zone is not None and node.zone not in zones:
            fail(
                f"zone {node.zone!r} is not in the inventory's zones",
                ("nodes", i, "zone"),
                "add it to `zones:` or fix the spelling",
            )
    if {b.kind for b in inventory.balancers} & {"ipvsadm", "keepalived"}:
        for i, node in enumerate(inventory.nodes):
            host = node.address.rsplit(":", 1)[0].strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                fail(
                    f"{node.address!r}: LVS (ipvsadm, keepalived) needs IP:PORT real servers, "
                    "not host names",
                    ("nodes", i, "address"),
                    "give the node's IP address, or drop the LVS balancers",
                )
    if inventory.arrivals in ("least_connections", "shortest_expected_delay"):
        for i, node in enumerate(inventory.nodes):
            if node.workers is None:
                fail(
                    f"node {node.name!r} has no workers, which arrivals: {inventory.arrivals} "
                    "needs: behind least connections a node rarely queues alone, so its "
                    "windows cannot tell its slot count",
                    ("nodes", i),
                    "give every node its workers (concurrent request slots), or set arrivals: "
                    "round_robin for a cruder correction",
                )
    if inventory.planning.survive == "zone" and len(zones) < 2:
        fail(
            "survive: zone needs at least two zones under `zones:`",
            ("planning", "survive"),
            "list the zones, or drop `survive: zone`",
        )


def _ansible_nodes(path: str | Path, group: str | None) -> list[Node]:
    from capplan.ansible import load_ansible_nodes

    nodes = []
    for fields, host, line in load_ansible_nodes(path, group):
        try:
            nodes.append(Node.model_validate(fields))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise InputError(
                f"{key}: {message}",
                file=str(path),
                line=line,
                key=f"host {host}",
                hint="see the README's variable table (capplan_* host or group vars)",
            ) from None
    return nodes


def parse_inventory(text: str, file: str, *, extra_nodes: list[Node] | None = None) -> Inventory:
    """
    Parse and validate an inventory document.

    Args:
        text: The YAML text.
        file: Its name, for messages.

    Returns:
        The validated inventory.

    Raises:
        InputError: naming file, line and key of the first problem.
    """
    located = load_yaml(text, file)
    if not isinstance(located.data, dict):
        raise InputError(
            "an inventory is a mapping with at least 'cluster' and 'nodes'",
            file=file,
            line=1,
            hint="start from examples/web/inventory.yaml",
        )
    data = located.data
    if extra_nodes:
        data = {**data, "nodes": [*(data.get("nodes") or []), *extra_nodes]}
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        raise _errors_to_input(exc, located) from None
    _check_unique(located, inventory)
    _check_planning(located, inventory)
    return inventory


def load_inventory(
    path: str | Path, *, ansible: str | Path | None = None, group: str | None = None
) -> Inventory:
    """
    Read and validate the inventory file at ``path``, with the nodes of an Ansible inventory
    (``ansible``, only its ``group`` if given) added to its own.
    """
    extra = _ansible_nodes(ansible, group) if ansible is not None else None
    return parse_inventory(read_input(path, "inventory"), str(path), extra_nodes=extra)


def parse_profile(text: str, file: str, *, name: str | None = None) -> Profile:
    """
    Parse and validate a profile document (its ``name`` defaults to ``name``).
    """
    located = load_yaml(text, file)
    if not isinstance(located.data, dict):
        raise InputError(
            "a profile is a mapping", file=file, line=1, hint="start from profiles/balanced.yaml"
        )
    data = dict(located.data)
    if name is not None:
        data.setdefault("name", name)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise _errors_to_input(exc, located) from None


def _profiles_dir() -> Path:
    # 1. inside an installed wheel (hatch force-includes profiles/ as capplan/_profiles);
    # 2. a source checkout or editable install: profiles/ beside the package.
    packaged = Path(str(resources.files("capplan"))) / "_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "profiles"


def builtin_profiles() -> dict[str, Path]:
    """
    The built-in profiles, name → file.
    """
    folder = _profiles_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_profile(name_or_path: str, *, relative_to: Path | None = None) -> Profile:
    """
    Load a built-in profile by name, or a profile file by path.

    Args:
        name_or_path: ``balanced`` (a built-in) or ``ops/profile.yaml``.
        relative_to: The folder a relative path is read from (the inventory's).

    Returns:
        The validated profile.
    """
    builtins = builtin_profiles()
    if name_or_path in builtins:
        path = builtins[name_or_path]
        return parse_profile(path.read_text(encoding="utf-8"), str(path), name=path.stem)
    path = Path(name_or_path).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.exists():
        known = ", ".join(builtins) or "none installed"
        raise InputError(
            f"no profile {name_or_path!r}",
            key="profile",
            hint=f"use a built-in one ({known}) or the path of a profile file",
        )
    return parse_profile(read_input(path, "profile"), str(path), name=path.stem)
