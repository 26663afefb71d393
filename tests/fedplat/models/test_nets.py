"""The target networks: output shapes, layer sizes and parameter counts, and the inputs refused."""

import pytest
import torch

from fedplat.models.nets import CNN, CNN1D, MLP, HyperFLCNN, LeNet


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_flattens_and_counts_its_parameters():
    model = MLP(40, [100, 100], 10)
    assert _params(model) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert model(torch.randn(3, 40)).shape == (3, 10)
    linear = MLP(784, [], 10)  # no hidden layer: one Linear on the flattened input
    assert _params(linear) == 784 * 10 + 10
    assert linear(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_halves_the_image_per_block():
    model = CNN((1, 28, 28), [32, 64], [128], 10)
    assert model.classifier.net[1].in_features == 64 * 7 * 7
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert CNN((3, 8, 8), [4], [], 5)(torch.randn(1, 3, 8, 8)).shape == (1, 5)


def test_cnn1d_strides_by_two_and_takes_flat_or_channel_inputs():
    model = CNN1D(40, [25, 25, 25], [], 10)
    assert model.classifier.net[1].in_features == 25 * 4  # 40 -> 19 -> 9 -> 4
    x = torch.randn(3, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))
    assert model(x).shape == (3, 10)


def test_lenet_has_the_papers_size_and_its_head_is_fc3():
    assert _params(LeNet((3, 32, 32), 10)) == 121_182  # pFedHN/PeFLL's CNNTarget on CIFAR-10
    small = LeNet((1, 28, 28), 10)
    assert small.fc1.in_features == 512 and small.fc3.out_features == 10
    assert LeNet((1, 28, 28), 7, n_kernels=4).conv2.out_channels == 8
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 16x16 pixels, got 15x15"):
        LeNet((1, 15, 15), 10)


def test_hyperfl_cnn_picks_the_cifar_network_for_colour_32x32_only():
    cifar = HyperFLCNN((3, 32, 32), 10)
    assert cifar.conv3 is not None and cifar.fc1.in_features == 576
    fmnist = HyperFLCNN((1, 28, 28), 62)
    assert fmnist.conv3 is None and fmnist.fc1.in_features == 800
    assert HyperFLCNN((3, 28, 28), 10).conv3 is None
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert fmnist(torch.randn(2, 1, 28, 28)).shape == (2, 62)
    with pytest.raises(ValueError, match="HyperFL's CNN needs inputs"):
        HyperFLCNN((1, 10, 10), 10)


def test_char_lstm_is_leafs_model_and_takes_integer_sequences():
    from fedplat.models.nets import CharLSTM
    from fedplat.training.batched import supports_batching

    model = CharLSTM(80)
    assert _params(model) == 819_920  # embedding 8, 2 x LSTM(256), linear to 80
    x = torch.randint(0, 80, (3, 80), dtype=torch.uint8)
    out = model(x)
    assert out.shape == (3, 80) and torch.equal(out, model(x.long()))
    assert model.lstm.num_layers == 2 and model.embedding.embedding_dim == 8
    assert not supports_batching(model)  # vmap has no batching rule for aten::lstm
