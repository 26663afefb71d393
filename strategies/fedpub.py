"""FED-PUB (Baek et al., ICML 2023): personalized subgraph FL, server half.

Each round every participating client i returns its shared tensors θ_i (weights and biases of
the masked GCN; its masks stay home), its number of training nodes n_i and a *functional
embedding* e_i: the mean output of its GCN on a random proxy graph that every client rebuilds
from the same seed. The server turns the embeddings into a similarity matrix
S_ij = cos(e_i, e_j), normalises each row (alpha_i = softmax(τ S_i), or S_i / Σ_k S_ik), and gives
each client its own model θ̄_i = Σ_j alpha_ij θ_j. A train-node-weighted average θ_g serves
clients that have not been personalised yet (round 1 with full participation).

`strategy.as_released=true` reproduces the released code where it differs from the paper
(specs/fedpub.md §8): masks are uploaded and averaged too (clients ignore them on load), the
global average is uniform, and the clients' regularisers carry no gradient.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, RecordDict
from omegaconf import DictConfig
from typing_extensions import override

from fedplat.config.checks import check_choice, check_float, check_int
from fedplat.core import ops
from fedplat.core.records import from_record, metrics_of, to_record
from fedplat.core.strategy import ClientInfo, Strategy
from fedplat.data.datasets import dataset_info
from fedplat.errors import UserError

log = logging.getLogger("fedplat")


# --- pure functions ------------------------------------------------------------------------------


def cosine_similarity(embeddings: np.ndarray) -> np.ndarray:
    """S_ij = e_iᵀe_j / (‖e_i‖‖e_j‖) for the rows of `embeddings` (a zero row gives 0s, S_ii=1).

    sklearn's `pairwise.cosine_similarity` agrees to 1 ulp (tested) but gives S_ii = 0 for a
    zero row and normalises in another order; this stays so FedPub's runs keep their numbers
    bit for bit.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    s = (e / safe[:, None]) @ (e / safe[:, None]).T
    np.fill_diagonal(s, 1.0)
    return s


def aggregation_weights(similarity: np.ndarray, tau: float, agg_norm: str = "exp") -> np.ndarray:
    """Row-normalised weights alpha from S: softmax(τ S_i) per row ("exp"), or S_ij / Σ_k S_ik.

    "cosine" can be unstable with negative similarities: rows whose sum is not positive fall
    back to the row's own model (alpha_ii = 1).
    """
    s = np.asarray(similarity, dtype=np.float64)
    if agg_norm == "exp":
        z = tau * s
        z = np.exp(z - z.max(axis=1, keepdims=True))  # stable softmax, same result
        return z / z.sum(axis=1, keepdims=True)
    if agg_norm == "cosine":
        sums = s.sum(axis=1, keepdims=True)
        out = np.where(sums > 1e-12, s / np.where(sums > 1e-12, sums, 1.0), 0.0)
        bad = sums[:, 0] <= 1e-12
        out[bad] = np.eye(len(s))[bad]
        return out
    raise ValueError(f"unknown agg_norm {agg_norm!r}")


def personalized_models(states: list[ops.State], weights: np.ndarray) -> list[ops.State]:
    """θ̄_i = Σ_j alpha_ij θ_j for every row i (states ordered as alpha's columns)."""
    ids = list(range(len(states)))
    return [ops.weighted_average(dict(zip(ids, states)),
                                 {j: float(weights[i, j]) for j in ids}) for i in ids]


def community_recovery(similarity: np.ndarray, groups: list[int]) -> dict[str, float]:
    """How well S recovers known client groups (planted communities).

    * within / across: mean S_ij over pairs i≠j of the same / of different groups;
    * top1: share of clients whose most similar other client is in their group;
    * ari: adjusted Rand index between the groups and an average-linkage clustering of 1-S
      into as many clusters as there are groups.
    """
    s = np.asarray(similarity, dtype=np.float64)
    g = np.asarray(groups)
    k = len(g)
    same = g[:, None] == g[None, :]
    off = ~np.eye(k, dtype=bool)
    out: dict[str, float] = {
        "within": float(s[same & off].mean()) if np.any(same & off) else math.nan,
        "across": float(s[~same].mean()) if np.any(~same) else math.nan,
    }
    masked = np.where(off, s, -np.inf)
    out["top1"] = float(np.mean(g[masked.argmax(axis=1)] == g)) if k > 1 else math.nan
    n_groups = len(np.unique(g))
    if 1 < n_groups < k:
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.metrics import adjusted_rand_score

        dist = np.clip(1.0 - s, 0.0, None)
        np.fill_diagonal(dist, 0.0)
        labels = AgglomerativeClustering(n_clusters=n_groups, metric="precomputed",
                                         linkage="average").fit_predict((dist + dist.T) / 2)
        out["ari"] = float(adjusted_rand_score(g, labels))
    return out


def shared_keys(state: ops.State, with_masks: bool) -> list[str]:
    """The keys a client uploads: weights and biases, plus masks only if `with_masks`."""
    return [k for k in state if with_masks or "mask" not in k]


# --- the strategy --------------------------------------------------------------------------------


class FedPub(Strategy):
    """Personalised aggregation by functional similarity; masks stay on the clients."""

    @classmethod
    @override
    def validate_config(cls, cfg: DictConfig) -> None:
        tau = check_float(cfg, "strategy.tau")
        if tau is None or tau <= 0:
            raise UserError(f"strategy.tau={tau} must be > 0 (the softmax scale of the "
                            "similarities; the paper uses 3 for Cora disjoint, 10 by default)")
        check_choice(cfg, "strategy.agg_norm", ["exp", "cosine"])
        check_float(cfg, "strategy.l1", 0.0)
        check_float(cfg, "strategy.loc_l2", 0.0)
        check_choice(cfg, "strategy.prox_anchor", ["received", "global"])
        check_choice(cfg, "strategy.global_weighting", ["train_nodes", "uniform"])
        check_int(cfg, "strategy.proxy.n_graphs", lo=1)
        check_int(cfg, "strategy.proxy.nodes_per_graph", lo=1)
        check_float(cfg, "strategy.proxy.p_in", 0.0, 1.0)
        check_float(cfg, "strategy.proxy.p_out", 0.0, 1.0)
        check_int(cfg, "strategy.proxy.seed", lo=0)
        if not isinstance(cfg.strategy.get("as_released"), bool):
            raise UserError(f"strategy.as_released={cfg.strategy.get('as_released')!r} must be "
                            "true or false")
        if dataset_info(cfg.dataset).kind != "graph":
            raise UserError(f"strategy fedpub needs a graph dataset, not '{cfg.dataset.name}' "
                            "(e.g. dataset=sbm partition=metis_disjoint, or "
                            "experiment=fedpub_sbm)")
        if str(cfg.model.name) != "masked_gcn":
            raise UserError(f"strategy fedpub needs model=masked_gcn, not '{cfg.model.name}'")

    @property
    def as_released(self) -> bool:
        """Reproduce the released code's behaviour (specs/fedpub.md §8)."""
        return bool(self.params.as_released)

    @override
    def setup(self, clients: dict[int, ClientInfo]) -> None:
        super().setup(clients)
        init = self.initial_model().state_dict()
        self.global_state: ops.State = ops.clone(
            {k: init[k] for k in shared_keys(init, self.as_released)})
        self.personal: dict[int, ops.State] = {}
        self.history: list[dict[str, Any]] = []
        self.recovery: dict[str, Any] = {}

    @override
    def configure_train(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        config = ConfigRecord({"as-released": self.as_released})
        global_rec = to_record(self.global_state)
        out = {}
        for cid in cids:
            content = RecordDict({"config": config})
            personal = self.personal.get(cid)
            content["arrays"] = to_record(personal) if personal is not None else global_rec
            if str(self.params.prox_anchor) == "global":
                content["global"] = global_rec
            out[cid] = content
        return out

    @override
    def aggregate_train(self, server_round: int, replies: dict[int, RecordDict],
                        failures: dict[int, str]) -> dict[str, Any]:
        ids = sorted(replies)
        states = [from_record(replies[c]["arrays"]) for c in ids]
        emb = np.stack([from_record(replies[c]["embedding"])["embedding"].numpy()
                        for c in ids])
        s = cosine_similarity(emb)
        alpha = aggregation_weights(s, float(self.params.tau), str(self.params.agg_norm))
        for cid, model in zip(ids, personalized_models(states, alpha)):
            self.personal[cid] = model
        uniform = self.as_released or str(self.params.global_weighting) == "uniform"
        sizes = {j: 1.0 if uniform else metrics_of(replies[c])["num-examples"]
                 for j, c in enumerate(ids)}
        self.global_state = ops.weighted_average(dict(enumerate(states)), sizes)
        self.history.append({"round": server_round, "clients": ids, "similarity": s.tolist(),
                             "weights": alpha.tolist()})
        off = ~np.eye(len(ids), dtype=bool)
        row: dict[str, Any] = {
            "similarity": np.round(s, 4).tolist(),
            "similarity_offdiag_mean": float(s[off].mean()) if len(ids) > 1 else 1.0,
            "weight_self_mean": float(np.diag(alpha).mean()),
        }
        if len(ids) != len(self.clients):
            row["similarity_clients"] = ids
        return row

    @override
    def configure_evaluate(self, server_round: int, cids: list[int]) -> dict[int, RecordDict]:
        """Each client's personalised model (only used when fraction_evaluate > 0)."""
        return {cid: RecordDict({"arrays": to_record(self.personal.get(cid, self.global_state))})
                for cid in cids}

    # -- results ----------------------------------------------------------------------------

    def _client_groups(self) -> list[int] | None:
        """Planted communities of the clients when the data defines them (else None).

        Only for evaluation artefacts: read from the partition that the server process can
        rebuild in simulation; the algorithm itself never sees it.
        """
        try:
            from fedplat.data import FederatedGraph, load_federated

            fed = load_federated(self.cfg)
        except Exception as exc:  # no data on this server (deployment): no recovery score
            log.info("fedpub: no client communities for the recovery score (%s)", exc)
            return None
        return fed.client_groups() if isinstance(fed, FederatedGraph) else None

    @override
    def summary(self) -> dict[str, Any]:
        return {"as_released": self.as_released, "community_recovery": self.recovery}

    @override
    def write_artifacts(self, run_dir: Path, rows: list[dict[str, Any]]) -> None:
        if not self.history:
            return
        last = self.history[-1]
        (run_dir / "similarity.json").write_text(json.dumps(
            {"tau": float(self.params.tau), "agg_norm": str(self.params.agg_norm),
             "rounds": self.history}) + "\n")
        groups = self._client_groups()
        if groups is not None:
            ids = last["clients"]
            self.recovery = {"groups": [groups[c] for c in ids], "round": last["round"],
                             **community_recovery(np.asarray(last["similarity"]),
                                                  [groups[c] for c in ids])}
            (run_dir / "community_recovery.json").write_text(json.dumps(self.recovery,
                                                                        indent=2) + "\n")
        plot_similarity(np.asarray(last["similarity"]), np.asarray(last["weights"]),
                        last["clients"], last["round"], run_dir / "similarity.png",
                        None if groups is None else [groups[c] for c in last["clients"]])


def plot_similarity(s: np.ndarray, alpha: np.ndarray, ids: list[int], server_round: int, path: Path,
                    groups: list[int] | None = None) -> None:
    """Heat maps of the final similarity matrix S and aggregation weights alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(ids)
    fig, axes = plt.subplots(1, 2, figsize=(min(4 + 0.35 * k, 16) * 2, min(3.5 + 0.3 * k, 14)))
    for ax, mat, title in ((axes[0], s, f"cosine similarity S (round {server_round})"),
                           (axes[1], alpha, "aggregation weights alpha (rows sum to 1)")):
        im = ax.imshow(mat, cmap="viridis")
        ax.set_title(title)
        labels = [str(c) if groups is None else f"{c}|g{groups[i]}" for i, c in enumerate(ids)]
        step = max(1, k // 30)
        ax.set_xticks(range(0, k, step), labels[::step], rotation=90, fontsize=7)
        ax.set_yticks(range(0, k, step), labels[::step], fontsize=7)
        ax.set_xlabel("client j")
        ax.set_ylabel("client i")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
