"""One Ray for the whole orchestration test session: a simulated two-node cluster.

Starting Ray costs 7-20 s on this machine, so every Ray test shares this one. Two nodes (each
with 2 CPUs and one `fake_gpu` custom resource standing in for a GPU) make the same instance
serve the multi-node test. Only what this fixture started is shut down (never `ray stop`).
"""

from __future__ import annotations

import os
import secrets
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# The tests in the sub-folders import the helpers of this folder (fake_trial, sqlite_writer) by
# name, under any pytest import mode.
sys.path.insert(0, HERE)
# Ray reads its auth mode once, at import: a simulated second node and an address-connected
# driver need token auth on in this process before `ray` is imported (docs/CLUSTER.md).
os.environ.setdefault("RAY_AUTH_MODE", "token")
# With token auth on, every Ray process needs the token. `ray.init()` writes ~/.ray/auth_token
# when it is missing, but `ray.cluster_utils.Cluster` does not: on a machine without that file
# its GCS exits at once ("Token authentication is enabled but Ray couldn't find an
# authentication token") and the fixture times out waiting for the GCS port. A token of the
# test session's own, passed to every Ray process through the environment, needs no file.
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
# A GCS that is slow to start on a loaded machine gets 120 s instead of Ray's default 30 s to
# publish its port (Ray's RAY_gcs_server_port_wait_time_s).
os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")


@pytest.fixture(scope="session")
def ray_cluster():
    # The fake trial lives in the tests folder, which workers cannot import: ship it by value.
    import fake_trial
    import ray
    from ray import cloudpickle  # Ray pickles with its vendored copy
    from ray.cluster_utils import Cluster

    cloudpickle.register_pickle_by_value(fake_trial)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"fake_gpu": 1, "head_node": 1}, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2, resources={"fake_gpu": 1, "worker_node": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
