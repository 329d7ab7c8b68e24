"""Starting (or joining) Ray leanly, and refusing trials no node can ever run.

Measured (docs/ARCHITECTURE.md; and `varscale launch` prints its own number): a local
`ray.init` without the dashboard takes ~6.5-8.5 s on an idle 2-core box, 17-19 s under load,
and may fail outright on an overloaded one. So: no dashboard unless asked (and then on
127.0.0.1), `num_cpus` only for a local instance (Ray refuses it with an address), and a failed
start becomes an error with the usual fixes. Joining a cluster with token auth needs
`RAY_AUTH_MODE=token` in the driver's environment (see docs/CLUSTER.md).

An address is checked before `ray.init` sees it: a TCP connect, then the HTTP/2 handshake every
gRPC server (Ray's GCS is one) answers at once. An open port that is not Ray (a web server, a
database) made `ray.init` hang for over 300 s; the handshake fails it in seconds.

GPUs per node: a trial that needs more GPUs than one node has runs over several nodes
(execution.multi_node); `node_group` decides how many, and `check_resources` refuses what the
cluster can never hold, whole or per node.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from dataclasses import dataclass

import ray

from orchestration.study.trials import TrialSpec
from var_model.errors import VarScaleError


class RayStartError(VarScaleError, RuntimeError):
    """Ray could not be started or joined."""


class ResourceError(VarScaleError, ValueError):
    """A trial asks for resources no node of the cluster has (it would wait forever)."""


def start_ray(
    address: str | None = None, num_cpus: float | None = None, dashboard: bool = False, quiet: bool = True
) -> float:
    """Start a local Ray or join `address` (or RAY_ADDRESS); returns the seconds it took."""
    if ray.is_initialized():
        return 0.0
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict = {
        "log_to_driver": not quiet,
        "configure_logging": True,
        "logging_level": "WARNING" if quiet else "INFO",
    }
    if address:
        check_reachable(address)
        options["address"] = address
    else:
        if dashboard:
            check_dashboard_installed()
        options["include_dashboard"] = dashboard
        options["dashboard_host"] = "127.0.0.1"
        if num_cpus is not None:
            options["num_cpus"] = num_cpus
    # Tune's default loggers import torch in the driver; not used here, but harmless to keep off.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    started = time.perf_counter()
    try:
        ray.init(**options)
    except Exception as error:  # Ray raises several types (ConnectionError, RuntimeError, ...)
        where = f"the cluster at {address}" if address else "a local Ray instance"
        raise RayStartError(
            f"could not start {where}: {type(error).__name__}: {error}\n"
            "hints: on a loaded machine Ray can take over 20 s to start, so retry when it is quieter; "
            "for a cluster check `ray status` on the head node, that the address is the head's "
            "GCS port (host:6379), and set RAY_AUTH_MODE=token if the cluster uses token auth"
        ) from error
    return time.perf_counter() - started


def check_reachable(address: str, timeout_seconds: float = 10.0) -> None:
    """A head that cannot be reached makes ray.init retry for minutes: fail in seconds instead."""
    if address == "auto" or "://" in address:
        return  # 'auto' reads the local cluster file; ray:// is Ray Client with its own timeouts
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayStartError(f"--address {address!r}: expected HOST:PORT of the head node, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_seconds).close()
    except OSError as error:
        raise RayStartError(
            f"cannot reach the Ray head at {address} ({error}); check that `ray start --head` runs "
            "there, the port (default 6379), and firewalls between this machine and the head"
        ) from None
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
        return  # a TLS cluster answers a TLS handshake first; Ray's own timeouts apply there
    if not speaks_grpc(host, int(port), timeout_seconds):
        raise RayStartError(
            f"--address {address}: the port is open but does not answer as a Ray head (no gRPC "
            "handshake); give the GCS port of the head node (`ray start --head --port=...`, default 6379)"
        )


# The client half of an HTTP/2 connection start (RFC 9113, 3.4): the preface and an empty
# SETTINGS frame. A gRPC server sends its own SETTINGS frame as the first thing on a connection.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME_TYPE = 0x04


def speaks_grpc(host: str, port: int, timeout_seconds: float = 10.0) -> bool:
    """True when the server at host:port opens an HTTP/2 connection (its first frame is SETTINGS)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds) as connection:
            connection.settimeout(timeout_seconds)
            connection.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
                chunk = connection.recv(9 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:  # refused, reset or silent until the timeout
        return False
    return header[3] == _SETTINGS_FRAME_TYPE and header[5:9] == b"\x00\x00\x00\x00"


# The module Ray itself imports to decide whether its dashboard can start.
_DASHBOARD_PROBE_MODULE = "ray.dashboard.optional_deps"
DASHBOARD_INSTALL_HINT = "pip install 'varscale[dashboard]' (or pip install 'ray[default]==2.60.0')"


def check_dashboard_installed() -> None:
    """The dashboard needs ray[default]; without it Ray fails after its start-up wait with a
    message about a minimal install. Say so before starting anything."""
    try:
        importlib.import_module(_DASHBOARD_PROBE_MODULE)  # a probe of what is installed, not a deferred import
    except ImportError as error:
        raise RayStartError(
            f"--dashboard needs Ray's dashboard packages, which are not installed ({error}); "
            f"install them with {DASHBOARD_INSTALL_HINT}, or launch without --dashboard"
        ) from None


def node_resources() -> list[dict[str, float]]:
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def trial_request(trial: TrialSpec) -> dict[str, float]:
    request = {"CPU": trial.cpus}
    if trial.gpus:
        request["GPU"] = trial.gpus
    request.update({name: amount for name, amount in trial.custom_resources.items() if amount})
    return request


@dataclass(frozen=True)
class NodeGroup:
    """Where a trial's processes go: `nodes` bundles, each `per_node` (the trial's request split
    evenly; `accelerator` is the GPU resource's name, a custom one in the CPU tests)."""

    nodes: int
    per_node: dict[str, float]
    accelerator: str = "GPU"

    @property
    def gpus_per_node(self) -> int:
        return int(self.per_node.get(self.accelerator, 0))

    @property
    def spans_nodes(self) -> bool:
        return self.nodes > 1


def largest_gpu_count(nodes: list[dict[str, float]], accelerator: str = "GPU") -> int:
    """The default of resources.gpus_per_node: the most GPUs any alive node has."""
    return int(max((node.get(accelerator, 0.0) for node in nodes), default=0.0))


def node_group(
    request: dict[str, float],
    nodes: list[dict[str, float]],
    gpus_per_node: int | None = None,
    accelerator: str = "GPU",
    key: str = "a trial",
) -> NodeGroup:
    """One node while the trial's GPUs fit on one (of `gpus_per_node`, default: the largest
    node's); else GPUs / gpus_per_node nodes, each with that share of every resource."""
    gpus = request.get(accelerator, 0.0)
    per_node = gpus_per_node or largest_gpu_count(nodes, accelerator)
    if gpus <= 1 or per_node <= 0 or gpus <= per_node:
        return NodeGroup(1, dict(request), accelerator)
    if gpus % per_node:
        raise ResourceError(
            f"{key} needs {gpus:g} GPUs, which do not divide into nodes of {per_node} (resources.gpus_per_node); "
            f"use a multiple of {per_node} GPUs, or a gpus_per_node that divides {gpus:g}"
        )
    count = int(gpus // per_node)
    return NodeGroup(count, {name: amount / count for name, amount in request.items()}, accelerator)


def _fits(request: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(name, 0.0) >= amount for name, amount in request.items())


def check_resources(trials: list[TrialSpec], nodes: list[dict[str, float]], gpus_per_node: int | None = None) -> None:
    """Every trial must fit: on one node, or (more GPUs than a node has) on as many distinct
    nodes as its group needs; otherwise Ray would queue it forever."""
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    problems = []
    for trial in trials:
        request = trial_request(trial)
        gpus, total_gpus = request.get("GPU", 0.0), sum(node.get("GPU", 0.0) for node in nodes)
        if gpus > total_gpus:
            problems.append(f"{trial.key} needs {gpus:g} GPUs; the whole cluster has {total_gpus:g}")
            continue
        try:
            group = node_group(request, nodes, trial.gpus_per_node or gpus_per_node, key=trial.key)
        except ResourceError as error:
            problems.append(str(error))
            continue
        holders = sum(_fits(group.per_node, node) for node in nodes)
        if holders >= group.nodes:
            continue
        largest = {name: max(node.get(name, 0.0) for node in nodes) for name in group.per_node}
        if group.spans_nodes:
            problems.append(
                f"{trial.key} needs {group.nodes} nodes with {group.per_node} each; {holders} nodes have that "
                f"(the largest node offers {largest})"
            )
        else:
            problems.append(f"{trial.key} needs {request}; the largest node offers {largest}")
    if problems:
        raise ResourceError(
            "some trials can never be scheduled (Ray would wait forever):\n  "
            + "\n  ".join(problems)
            + "\nlower resources.cpus/gpus/custom in the study (e.g. --set resources.gpus=0), "
            "or join a cluster that has them (--address)"
        )


def default_concurrency(trials: list[TrialSpec], totals: dict[str, float]) -> int:
    """How many trials the cluster can run at once (by the smallest trial's request).

    Submitting more would only queue them inside Ray, where the progress display could not
    tell queued from running; bigger trials than the smallest simply queue a little longer.
    """
    smallest = min(trials, key=lambda trial: trial.flops)
    request = trial_request(smallest)
    fits = [int(totals.get(name, 0.0) // amount) for name, amount in request.items() if amount > 0]
    return max(1, min(fits) if fits else len(trials))
