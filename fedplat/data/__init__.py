"""Data layer: offline-first loaders, partitioners and per-client splits."""

from fedplat.data.datasets import DATASETS, DatasetInfo, RawDataset, dataset_info, load_raw
from fedplat.data.federated import (
    ClientData,
    FederatedDataset,
    build_federated,
    load_federated,
    validate_data_config,
)
from fedplat.data.partition import PARTITIONERS

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "ClientData",
    "DatasetInfo",
    "FederatedDataset",
    "RawDataset",
    "build_federated",
    "dataset_info",
    "load_federated",
    "load_raw",
    "validate_data_config",
]
