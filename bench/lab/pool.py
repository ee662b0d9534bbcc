"""
A lab pool: nodes with real, unequal capacities on loopback addresses, read from YAML.

.. code-block:: yaml

    name: default
    service: exp          # exp | fixed | lognormal
    cv: 0.4               # lognormal only: the service time's coefficient of variation
    seed: 1               # every node's service times are drawn from this seed
    nodes:
      - {name: n1, address: 127.0.0.2, port: 8080, slots: 2, service_ms: 20}

Each node is an M/G/c station: ``slots`` workers, one FIFO queue, service times with mean
``service_ms`` (at least 20 ms: timers tick in whole milliseconds) drawn from the pool's
``service`` distribution — or the node's own, when it has a ``service`` (and ``cv``) key.
Its capacity is ``slots / service_ms`` (``slots · 1000 / service_ms`` rps).  Addresses must
be IPv4 in 127.0.0.0/8: the loader refuses anything else, so a lab can only ever bind to and be
sent traffic on loopback.  ``port: 0`` takes any free port (for tests; the node process reports the
ports it bound).
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from capplan.models.queueing import Station

__all__ = [
    "DEFAULT_CV",
    "DEFAULT_POOL",
    "LARGE_POOL",
    "LOOPBACK",
    "MIN_SERVICE_MS",
    "POOLS_DIR",
    "SERVICES",
    "NodeSpec",
    "Pool",
    "PoolError",
    "ServiceKind",
    "load_pool",
    "parse_pool",
    "parse_services",
    "require_loopback",
    "scv",
    "service_times",
]

POOLS_DIR = Path(__file__).resolve().parent / "pools"
DEFAULT_POOL = POOLS_DIR / "default.yaml"
LARGE_POOL = POOLS_DIR / "large.yaml"

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
MIN_SERVICE_MS = 20.0
MAX_SERVICE_MS = 60_000.0
MAX_NODES = 64

ServiceKind = Literal["exp", "fixed", "lognormal"]
SERVICES: tuple[str, ...] = get_args(ServiceKind)
#: A lognormal service time's coefficient of variation when the pool file gives none.
DEFAULT_CV = 0.4


def scv(kind: str, cv: float) -> float:
    """
    The squared coefficient of variation of a service law: 1 (exp), 0 (fixed), cv² (lognormal).
    """
    if kind == "exp":
        return 1.0
    if kind == "fixed":
        return 0.0
    if kind == "lognormal":
        return cv**2
    raise ValueError(f"unknown service law {kind!r}")


def service_times(
    rng: np.random.Generator, kind: str, mean_s: float, cv: float, n: int
) -> npt.NDArray[np.float64]:
    """
    ``n`` service times (s) of mean ``mean_s`` from ``rng``, as a lab node draws them: ``fixed``,
    ``exp``, or ``lognormal`` with coefficient of variation ``cv`` (``σ² = ln(1 + cv²)``,
    ``μ = ln(mean) − σ²/2``).
    """
    if kind == "fixed":
        return np.full(n, mean_s)
    if kind == "exp":
        return rng.exponential(mean_s, n)
    if kind == "lognormal":
        sigma2 = math.log1p(cv**2)
        return rng.lognormal(math.log(mean_s) - sigma2 / 2.0, math.sqrt(sigma2), n)
    raise ValueError(f"unknown service law {kind!r}")


class PoolError(ValueError):
    """
    A pool file that cannot be used (unreadable, not YAML, or invalid).
    """


def require_loopback(host: str) -> str:
    """
    The IPv4 address ``host`` names, refusing anything outside 127.0.0.0/8.

    ``localhost`` is taken as 127.0.0.1; no other name is resolved (a name could point anywhere).

    Args:
        host: an IPv4 address in dotted form, or ``localhost``.

    Returns:
        The address in canonical dotted form.

    Raises:
        ValueError: when ``host`` is not a loopback IPv4 address.
    """
    text = host.strip()
    if text == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(
            f"{host!r} is not an IPv4 address; the lab only uses loopback addresses (127.0.0.0/8)"
        ) from exc
    if not isinstance(address, ipaddress.IPv4Address) or address not in LOOPBACK:
        raise ValueError(
            f"{host!r} is not a loopback address; the lab only binds to and sends to 127.0.0.0/8"
        )
    return str(address)


LoopbackAddress = Annotated[str, AfterValidator(require_loopback)]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class NodeSpec(_Strict):
    """
    One node: where it listens, how many requests it serves at once, its mean service time.
    """

    name: NodeName
    address: LoopbackAddress
    port: int = Field(ge=0, le=65535)
    slots: int = Field(ge=1, le=10_000)
    service_ms: float = Field(ge=MIN_SERVICE_MS, le=MAX_SERVICE_MS)
    service: ServiceKind | None = None
    cv: float | None = Field(None, gt=0.0, le=2.0)

    @property
    def capacity_rps(self) -> float:
        """
        The node's service capacity in requests per second: ``slots · 1000 / service_ms``.
        """
        return self.slots * 1000.0 / self.service_ms


class Pool(_Strict):
    """
    A pool of nodes sharing one service-time distribution and one seed.
    """

    name: NodeName
    service: ServiceKind = "exp"
    cv: float = Field(DEFAULT_CV, gt=0.0, le=2.0)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    nodes: list[NodeSpec] = Field(min_length=1, max_length=MAX_NODES)

    @model_validator(mode="after")
    def _distinct(self) -> Pool:
        names = [node.name for node in self.nodes]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate is not None:
            raise ValueError(f"node name {duplicate!r} is used twice")
        ends = [(node.address, node.port) for node in self.nodes if node.port != 0]
        clash = next((end for end in ends if ends.count(end) > 1), None)
        if clash is not None:
            raise ValueError(f"two nodes listen on {clash[0]}:{clash[1]}")
        return self

    def service_of(self, name: str) -> ServiceKind:
        """
        Node ``name``'s service-time distribution: its own ``service``, else the pool's.
        """
        return self.node(name).service or self.service

    def cv_of(self, name: str) -> float:
        """
        Node ``name``'s coefficient of variation for lognormal service (its own, else the
        pool's).
        """
        cv = self.node(name).cv
        return self.cv if cv is None else cv

    def scv_of(self, name: str) -> float:
        """
        Node ``name``'s squared coefficient of variation of the service time (``scv``).
        """
        return scv(self.service_of(name), self.cv_of(name))

    @property
    def capacity_rps(self) -> float:
        """
        The pool's total service capacity in requests per second.
        """
        return math.fsum(node.capacity_rps for node in self.nodes)

    def node(self, name: str) -> NodeSpec:
        """
        The node called ``name``.

        Raises:
            KeyError: when the pool has no such node.
        """
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"pool {self.name!r} has no node {name!r}")

    def station(self, name: str) -> Station:
        """
        The queueing model of node ``name`` in seconds (rates in requests per second).
        """
        node = self.node(name)
        return Station(
            servers=node.slots, service_time=node.service_ms / 1000.0, scv=self.scv_of(name)
        )


def parse_pool(text: str, *, source: str = "<pool>") -> Pool:
    """
    A pool from its YAML text.

    Raises:
        PoolError: when the text is not YAML or not a valid pool (the message names ``source``
            and the offending key).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PoolError(f"{source}: not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PoolError(f"{source}: a pool is a mapping with 'name' and 'nodes'")
    try:
        return Pool.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'pool'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PoolError(f"{source}: {problems}") from exc


def parse_services(text: str) -> tuple[str, ...]:
    """
    A comma-separated list of service laws (``--service``), in the order given.

    Raises:
        ValueError: on an unknown or empty list, naming the laws there are.
    """
    asked = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in asked if s not in SERVICES]
    if unknown or not asked:
        raise ValueError(
            f"--service {text!r}: unknown {', '.join(unknown) or 'empty'}; choose among "
            f"{','.join(SERVICES)}"
        )
    return asked


def load_pool(path: str | Path) -> Pool:
    """
    The pool in the YAML file at ``path``.

    Raises:
        PoolError: when the file cannot be read or is not a valid pool.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PoolError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    return parse_pool(text, source=str(file))
