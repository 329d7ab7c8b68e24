"""Joining and sizing a Ray cluster without Ray running: an open port that is not Ray fails in
seconds, the dashboard's missing packages are named before Ray starts, and GPU requests are
checked against the nodes, per node and for the whole cluster."""

import importlib.util
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestration.execution.ray_runtime import (
    DASHBOARD_INSTALL_HINT,
    RayStartError,
    ResourceError,
    check_dashboard_installed,
    check_reachable,
    check_resources,
    node_group,
    speaks_grpc,
)
from orchestration.study.loading import load_study
from orchestration.study.trials import expand

TINY = str(Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml")


def serve(reply: bytes | None):
    """A TCP server on 127.0.0.1 that answers each connection with `reply` (None: says nothing)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    connections = []

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connections.append(connection)
            if reply is not None:
                connection.sendall(reply)

    threading.Thread(target=accept, daemon=True).start()
    return listener, f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n", b"-ERR unknown command\r\n"])
def test_an_open_port_that_is_not_ray_fails_in_seconds_with_one_line(reply):
    listener, address = serve(reply)
    started = time.monotonic()
    with pytest.raises(RayStartError, match="open but does not answer as a Ray head") as raised:
        check_reachable(address, timeout_seconds=2.0)
    listener.close()
    assert time.monotonic() - started < 5.0
    assert "\n" not in str(raised.value)


def test_a_server_that_opens_http2_passes_the_handshake():
    # what a gRPC server (Ray's GCS) sends first: an empty SETTINGS frame on stream 0
    listener, address = serve(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    host, port = address.split(":")
    assert speaks_grpc(host, int(port), timeout_seconds=2.0)
    check_reachable(address, timeout_seconds=2.0)
    listener.close()


def test_the_gcs_of_a_running_ray_passes_the_handshake(ray_cluster):
    check_reachable(ray_cluster.address, timeout_seconds=5.0)


@pytest.mark.skipif(
    importlib.util.find_spec("aiohttp_cors") is not None, reason="the dashboard's packages are installed here"
)
def test_dashboard_without_its_packages_names_the_install_command():
    with pytest.raises(RayStartError, match="--dashboard needs Ray's dashboard packages") as raised:
        check_dashboard_installed()
    assert DASHBOARD_INSTALL_HINT in str(raised.value)


def trials_with(tmp_path, gpus: int):
    return expand(
        load_study(
            TINY,
            [
                f"storage={tmp_path}",
                f"resources.gpus={gpus}",
                "model.depths=[1]",
                "recipe.batch_size=192",
                "budgets.values=[1920]",
            ],
        )
    )


EIGHT_GPU_NODES = [{"CPU": 16.0, "GPU": 8.0}] * 4


def test_more_gpus_than_the_whole_cluster_is_an_error(tmp_path):
    with pytest.raises(ResourceError, match="needs 64 GPUs; the whole cluster has 32"):
        check_resources(trials_with(tmp_path, 64), EIGHT_GPU_NODES)


def test_gpus_per_node_that_does_not_divide_a_trials_gpus_is_an_error(tmp_path):
    with pytest.raises(ResourceError, match=r"needs 12 GPUs, which do not divide into nodes of 8 \(resources.gpus"):
        check_resources(trials_with(tmp_path, 12), EIGHT_GPU_NODES)
    with pytest.raises(ResourceError, match="do not divide into nodes of 5"):
        check_resources(trials_with(tmp_path, 16), EIGHT_GPU_NODES, gpus_per_node=5)


def test_a_trial_larger_than_a_node_spans_nodes_when_enough_nodes_have_its_share(tmp_path):
    check_resources(trials_with(tmp_path, 16), EIGHT_GPU_NODES)  # two of the four nodes
    check_resources(trials_with(tmp_path, 16), EIGHT_GPU_NODES, gpus_per_node=4)  # four half nodes
    busy = [{"CPU": 16.0, "GPU": 8.0}, {"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 8.0}]
    with pytest.raises(ResourceError, match=r"needs 3 nodes with \{'CPU': 0.1\d*, 'GPU': 4.0\} each; 2 nodes"):
        check_resources(trials_with(tmp_path, 12), busy, gpus_per_node=4)


def test_node_group_splits_every_resource_evenly_and_keeps_small_trials_on_one_node():
    nodes = [{"CPU": 8.0, "GPU": 4.0}] * 2
    group = node_group({"CPU": 8.0, "GPU": 8.0, "h100": 8.0}, nodes)
    assert (group.nodes, group.per_node, group.gpus_per_node) == (2, {"CPU": 4.0, "GPU": 4.0, "h100": 4.0}, 4)
    assert not node_group({"CPU": 1.0, "GPU": 4.0}, nodes).spans_nodes
    assert node_group({"CPU": 2.0, "fake_gpu": 2.0}, [{"fake_gpu": 1.0}] * 2, accelerator="fake_gpu").nodes == 2


@pytest.mark.slow  # a fresh `varscale launch` process: 10-60 s of imports on a loaded 2-core box
def test_launch_at_an_open_port_that_is_not_ray_fails_in_one_line_and_leaves_no_run_running(tmp_path):
    # A fresh process: in this one a test may already have joined the session's Ray, and a
    # joined launch neither starts Ray nor checks an address. (The seconds: the test above.)
    listener, address = serve(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    launched = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "launch", TINY, "--set", f"storage={tmp_path}"]
        + ["--address", address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    listener.close()
    assert launched.returncode != 0
    errors = [line for line in launched.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "open but does not answer as a Ray head" in errors[0], launched.stderr
    client = MlflowClient(load_study(TINY, [f"storage={tmp_path}"]).tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tiny_test").experiment_id])
    assert runs and all(run.info.status != "RUNNING" for run in runs)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("aiohttp_cors") is None, reason="needs varscale[dashboard] installed")
def test_dashboard_starts_when_its_packages_are_installed():
    # A fresh process: this one may have joined the session's Ray already.
    script = (
        "import ray\n"
        "from orchestration.execution.ray_runtime import start_ray\n"
        "start_ray(num_cpus=1, dashboard=True)\n"
        "print('started', flush=True)\n"
        "ray.shutdown()\n"
    )
    started = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0 and "started" in started.stdout, started.stderr[-2000:]


# What a local launch's Ray listens on, from a fresh process (psutil over its process tree).
LISTENERS_SCRIPT = """
import json, psutil
from orchestration.execution.loopback import bind_local_ray_to_loopback
bind_local_ray_to_loopback(None)  # what `varscale launch` does before it imports Ray
import ray
from orchestration.execution.ray_runtime import start_ray
start_ray(num_cpus=1)
ray.get(ray.remote(lambda: 0).remote())  # a worker too
tree = {psutil.Process().pid} | {child.pid for child in psutil.Process().children(recursive=True)}
listening = [
    [connection.laddr.ip, connection.laddr.port, psutil.Process(connection.pid).name()]
    for connection in psutil.net_connections("inet")
    if connection.status == psutil.CONN_LISTEN and connection.pid in tree
]
print(json.dumps(listening), flush=True)
ray.shutdown()
"""


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as gRPC binds it
    return (mapped or address).is_loopback


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only():
    started = subprocess.run([sys.executable, "-c", LISTENERS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]
    listening = json.loads(started.stdout.strip().splitlines()[-1])
    exposed = [entry for entry in listening if not _is_loopback(entry[0])]
    assert listening and not exposed, f"listening beyond loopback: {exposed}"


def test_loopback_only_for_a_local_ray(monkeypatch):
    from orchestration.execution.loopback import SINGLE_MACHINE_SWITCH, bind_local_ray_to_loopback

    monkeypatch.delenv(SINGLE_MACHINE_SWITCH, raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert not bind_local_ray_to_loopback(None) and SINGLE_MACHINE_SWITCH not in os.environ
    monkeypatch.delenv("RAY_ADDRESS")
    assert not bind_local_ray_to_loopback("10.0.0.5:6379") and SINGLE_MACHINE_SWITCH not in os.environ
    assert bind_local_ray_to_loopback(None) and os.environ[SINGLE_MACHINE_SWITCH] == "0"
