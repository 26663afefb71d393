"""GCN and masked GCN: normalisation, layer maths, masks, pruning, embeddings."""

import pytest
import torch

from fedplat.models.gnn import GCN, gcn_adjacency, gcn_edges, propagate, prune

EDGES = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # path 0-1-2-3


def test_gcn_normalisation_matches_hand_values_and_pyg():
    src, dst, w = gcn_edges(EDGES, 4)
    weights = {(int(s), int(d)): float(v) for s, d, v in zip(src, dst, w)}
    # degrees with self-loops: 2, 3, 3, 2
    assert weights[(0, 0)] == pytest.approx(1 / 2)
    assert weights[(0, 1)] == pytest.approx(1 / (2 * 3) ** 0.5)
    assert weights[(1, 2)] == pytest.approx(1 / 3)
    gcn_norm = pytest.importorskip("torch_geometric.nn.conv.gcn_conv").gcn_norm
    ei, ew = gcn_norm(EDGES, None, 4, add_self_loops=True)
    theirs = {(int(s), int(d)): float(v) for (s, d), v in zip(ei.t(), ew)}
    assert theirs.keys() == weights.keys()
    assert all(theirs[k] == pytest.approx(weights[k]) for k in theirs)


def test_propagate_is_a_matrix_product():
    adj = gcn_adjacency(EDGES, 4)
    h = torch.randn(4, 3)
    dense = torch.zeros(4, 4)
    for s, d, v in zip(*gcn_edges(EDGES, 4)):
        dense[d, s] = v
    assert torch.allclose(propagate(h, adj), dense @ h, atol=1e-6)


def test_masked_layer_is_a_hat_x_masked_w_plus_b():
    torch.manual_seed(0)
    model = GCN(5, [3], 2, dropout=0.0, masked=True)
    conv = model.conv1
    with torch.no_grad():
        conv.mask.copy_(torch.rand_like(conv.mask))
        conv.bias.copy_(torch.randn(3))
    x = torch.randn(4, 5)
    dense = torch.zeros(4, 4)
    for s, d, v in zip(*gcn_edges(EDGES, 4)):
        dense[d, s] = v
    want = dense @ x @ (conv.lin.weight * conv.mask).t() + conv.bias
    assert torch.allclose(model.embed(x, EDGES), want, atol=1e-5)


def test_parameter_names_and_masks_start_at_one():
    model = GCN(6, [4, 4], 3, masked=True)
    names = sorted(n for n, _ in model.named_parameters())
    assert names == sorted(["conv1.lin.weight", "conv1.mask", "conv1.bias", "conv2.lin.weight",
                     "conv2.mask", "conv2.bias", "clsif.weight", "clsif.mask", "clsif.bias"])
    assert all(torch.all(p == 1) for n, p in model.named_parameters() if "mask" in n)
    assert model.clsif.bias.shape == (1, 3)
    plain = GCN(6, [4, 4], 3)
    assert sorted(n for n, _ in plain.named_parameters()) == [n for n in names if "mask" not in n]


def test_unmasked_and_ones_masked_models_agree():
    torch.manual_seed(1)
    masked = GCN(6, [4], 3, dropout=0.0, masked=True)
    torch.manual_seed(1)
    plain = GCN(6, [4], 3, dropout=0.0)
    x = torch.randn(4, 6)
    assert torch.allclose(masked(x, EDGES), plain(x, EDGES))


def test_pruning_only_in_eval_mode():
    m = torch.tensor([0.5, 1e-4, -2e-4, -0.3])
    assert torch.equal(prune(m, 1e-3, training=True), m)
    assert prune(m, 1e-3, training=False).tolist() == pytest.approx([0.5, 0.0, 0.0, -0.3])
    model = GCN(3, [2], 2, dropout=0.0, masked=True, prune_threshold=1e-3)
    with torch.no_grad():
        model.conv1.mask.fill_(1e-4)  # below the threshold: the layer is switched off in eval
    x = torch.randn(4, 3)
    model.eval()
    assert torch.allclose(model.embed(x, EDGES), model.conv1.bias.expand(4, 2))
    model.train()
    assert not torch.allclose(model.embed(x, EDGES), model.conv1.bias.expand(4, 2))


def test_embedding_shape_and_determinism_in_eval():
    model = GCN(6, [8, 5], 3, dropout=0.5, masked=True).eval()
    x = torch.randn(7, 6)
    edges = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    a, b = model.embed(x, edges), model.embed(x, edges)
    assert a.shape == (7, 5) and torch.equal(a, b)
    assert model(x, edges).shape == (7, 3)


def test_xavier_mask_init():
    torch.manual_seed(0)
    model = GCN(6, [4], 3, masked=True, mask_init="xavier")
    assert not torch.all(model.conv1.mask == 1)
