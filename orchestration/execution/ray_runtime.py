"""Starting (or joining) Ray leanly, and refusing trials no node can ever run.

Measured (docs/ARCHITECTURE.md; and `varscale launch` prints its own number): a local
`ray.init` without the dashboard takes ~6.5-8.5 s on an idle 2-core box, 17-19 s under load,
and may fail outright on an overloaded one. So: no dashboard unless asked (and then on
127.0.0.1), `num_cpus` only for a local instance (Ray refuses it with an address), and a failed
start becomes an error with the usual fixes. Joining a cluster with token auth needs
`RAY_AUTH_MODE=token` in the driver's environment (see docs/CLUSTER.md).
"""

from __future__ import annotations

import os
import socket
import time

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


def node_resources() -> list[dict[str, float]]:
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def trial_request(trial: TrialSpec) -> dict[str, float]:
    request = {"CPU": trial.cpus}
    if trial.gpus:
        request["GPU"] = trial.gpus
    request.update({name: amount for name, amount in trial.custom_resources.items() if amount})
    return request


def check_resources(trials: list[TrialSpec], nodes: list[dict[str, float]]) -> None:
    """Every trial must fit on at least one node; otherwise Ray would queue it forever."""
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    problems = []
    for trial in trials:
        request = trial_request(trial)
        if not any(all(node.get(name, 0.0) >= amount for name, amount in request.items()) for node in nodes):
            largest = {name: max(node.get(name, 0.0) for node in nodes) for name in request}
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
