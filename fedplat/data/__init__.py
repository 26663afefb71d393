"""Data layer: offline-first loaders, partitioners and per-client splits (samples or subgraphs)."""

from fedplat.data.datasets import DATASETS, DatasetInfo, RawDataset, dataset_info, load_raw
from fedplat.data.federated import (
    ClientData,
    FederatedDataset,
    FederatedGraph,
    GraphClientData,
    build_federated,
    load_federated,
    validate_data_config,
)
from fedplat.data.graph_partition import GRAPH_PARTITIONERS
from fedplat.data.graphs import GraphDataset, is_graph
from fedplat.data.partition import PARTITIONERS

__all__ = [
    "DATASETS",
    "GRAPH_PARTITIONERS",
    "PARTITIONERS",
    "ClientData",
    "DatasetInfo",
    "FederatedDataset",
    "FederatedGraph",
    "GraphClientData",
    "GraphDataset",
    "RawDataset",
    "build_federated",
    "dataset_info",
    "is_graph",
    "load_federated",
    "load_raw",
    "validate_data_config",
]
