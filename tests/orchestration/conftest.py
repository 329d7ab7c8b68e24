"""One Ray for the whole orchestration test session: a simulated two-node cluster.

Starting Ray costs 7-20 s on this machine, so every Ray test shares this one. Two nodes (each
with 2 CPUs and one `fake_gpu` custom resource standing in for a GPU) make the same instance
serve the multi-node test. Only what this fixture started is shut down (never `ray stop`).
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# Ray reads its auth mode once, at import: a simulated second node and an address-connected
# driver need token auth on in this process before `ray` is imported (ORCHESTRATION_NOTES).
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture(scope="session")
def ray_cluster():
    from ray import cloudpickle  # Ray pickles with its vendored copy
    import ray
    from ray.cluster_utils import Cluster

    # The fake trial lives in the tests folder, which workers cannot import: ship it by value.
    sys.path.insert(0, HERE)
    import fake_trial

    cloudpickle.register_pickle_by_value(fake_trial)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"fake_gpu": 1, "head_node": 1}, "include_dashboard": False})
    cluster.add_node(num_cpus=2, resources={"fake_gpu": 1, "worker_node": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
