"""fedplat: a federated-learning research platform on Flower, PyTorch, Ray and Hydra."""

from fedplat.errors import FedplatError, RunAborted, UserError

__version__ = "0.1.0"
__all__ = ["FedplatError", "RunAborted", "UserError", "__version__"]
