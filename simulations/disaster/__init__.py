"""Decentralized (peer-to-peer) learning on disrupted networks: `fedplat scenario=disaster`.

Flower has no peer-to-peer mode, so this package runs on Ray directly: a pool of Ray actors
(shards) each owns a subset of the nodes, and models travel between them through Ray's object
store. `run` and `validate_config` are the scenario's two entry points (fedplat's
`scenario.runner` names `run`; `fedplat.config.compose.validate` calls `validate_config`). See
docs/disaster.md.
"""

from simulations.disaster.config import validate_config
from simulations.disaster.runner import run

__all__ = ["run", "validate_config"]
