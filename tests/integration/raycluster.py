"""A real two-node Ray cluster on this machine for tests: ``python -m tests.integration.raycluster DIR``.

Head and worker node both on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` stops Ray from
swapping 127.0.0.1 for the machine's network address), temp dirs under DIR, no dashboard.
Prints ``{"address": ...}`` once both nodes are up; SIGTERM shuts every node down.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

from tests.integration.conftest import free_port  # below the ephemeral range: nothing takes it first

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def main(folder: str, cpus: int = 2) -> int:
    from ray.cluster_utils import Cluster

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    common: dict[str, Any] = {"num_cpus": cpus, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **common,
            "temp_dir": os.path.join(folder, "head"),
            "include_dashboard": False,
            "dashboard_host": "127.0.0.1",
            # Ray's fixed defaults (8265, 52365) would clash with any other Ray on this machine.
            "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
        },
    )
    try:
        cluster.add_node(
            **common, temp_dir=os.path.join(folder, "worker"), dashboard_agent_listen_port=free_port()
        )
        print(json.dumps({"address": cluster.address}), flush=True)
        stop.wait()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
