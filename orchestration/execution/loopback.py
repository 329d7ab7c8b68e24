"""A local Ray that listens on 127.0.0.1 only: set before Ray is imported.

Measured (docs/CLUSTER.md): a plain local `ray.init` on Linux binds its GCS, both raylet ports,
the workers and the driver to every interface, and the autoscaler monitor to 0.0.0.0, so anyone
on the network can reach a study's workers. Ray 2.60 turns `_node_ip_address="127.0.0.1"` back
into the routable address; what keeps every one of those processes on loopback is its
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` switch (a single-machine mode, on by default on macOS and
Windows), which Ray reads once, when it is imported. So this module imports no Ray, and the CLI
calls it before it imports the launcher. Joining a cluster must not set it: nodes must then
reach each other.
"""

from __future__ import annotations

import os

SINGLE_MACHINE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def bind_local_ray_to_loopback(address: str | None) -> bool:
    """For a local Ray (no address, no RAY_ADDRESS): ask Ray for loopback-only listeners.
    Returns whether the switch is now set; a value the user set is left alone."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    os.environ.setdefault(SINGLE_MACHINE_SWITCH, "0")
    return os.environ[SINGLE_MACHINE_SWITCH] == "0"
