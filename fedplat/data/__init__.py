"""Data layer: offline-first loaders, partitioners and per-client splits (samples or subgraphs).

`datasets` holds one module per dataset behind `get_spec`; `partitioners` one module per
partitioner behind `get_partitioner`; `federated` builds every client's view from the config.
"""

from fedplat.data.base import DatasetInfo, GraphDataset, RawDataset, is_graph
from fedplat.data.datasets import DATASETS, dataset_info, get_spec, load_raw
from fedplat.data.federated import (
    ClientData,
    Federated,
    FederatedDataset,
    FederatedGraph,
    GeneratedFederatedDataset,
    GraphClientData,
    build_federated,
    load_federated,
    validate_data_config,
)
from fedplat.data.partitioners import PARTITIONERS, get_partitioner

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "ClientData",
    "DatasetInfo",
    "Federated",
    "FederatedDataset",
    "FederatedGraph",
    "GeneratedFederatedDataset",
    "GraphClientData",
    "GraphDataset",
    "RawDataset",
    "build_federated",
    "dataset_info",
    "get_partitioner",
    "get_spec",
    "is_graph",
    "load_federated",
    "load_raw",
    "validate_data_config",
]
