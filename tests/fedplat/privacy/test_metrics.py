"""Reconstruction metrics against hand-computed values."""

import math

import pytest
import torch

from fedplat.privacy.metrics import label_recovery, match, psnr, score, ssim, to_unit


def test_psnr_hand_values():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.full((2, 1, 4, 4), 0.1)
    b[1] = 0.0
    b[1, 0, 0, 0] = 0.5  # MSE 0.25 / 16
    p = psnr(b, a)
    assert float(p[0]) == pytest.approx(20.0, abs=1e-4)            # 10 log10(1 / 0.01)
    assert float(p[1]) == pytest.approx(10 * math.log10(64), abs=1e-4)  # 18.06 dB
    assert math.isinf(float(psnr(a, a)[0]))


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    c1 = 0.01 ** 2
    want = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)  # contrast/structure term = 1
    assert float(ssim(a, b)[0]) == pytest.approx(want, abs=1e-6)


def test_ssim_of_uncorrelated_two_by_two_images():
    """One 2x2 window (uniform weights): equal means and variances, zero covariance."""
    a = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).reshape(1, 1, 2, 2)
    c2 = 0.03 ** 2
    want = 1.0 * (0.0 + c2) / (0.25 + 0.25 + c2)
    assert float(ssim(a, b)[0]) == pytest.approx(want, rel=1e-5)


def test_ssim_identity_symmetry_and_range():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 20, 20, generator=gen)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    torch.testing.assert_close(ssim(x, y), ssim(y, x))
    assert bool(((ssim(x, y) < 1) & (ssim(x, y) > 0)).all())


def test_label_recovery_counts_multisets():
    assert label_recovery(torch.tensor([1, 1, 2]), torch.tensor([2, 1, 2])) == pytest.approx(2 / 3)
    assert label_recovery(torch.tensor([3]), torch.tensor([3])) == 1.0
    assert label_recovery(torch.tensor([0, 0]), torch.tensor([1, 2])) == 0.0


def test_match_undoes_a_shuffle_and_score_pairs_images():
    gen = torch.Generator().manual_seed(1)
    truth = torch.rand(4, 1, 6, 6, generator=gen)
    perm = torch.tensor([2, 0, 3, 1])
    recon = truth[perm] + 0.01
    got = match(recon, truth)
    torch.testing.assert_close(recon[got], truth + 0.01)
    low, high = torch.zeros(1), torch.ones(1)
    s = score(recon, torch.tensor([0, 1, 2, 3]), truth, torch.tensor([3, 2, 1, 0]), low, high)
    assert s["psnr"] == pytest.approx(40.0, abs=0.5)  # 0.01 everywhere (clamped at 1)
    assert s["label_recovery"] == 1.0


def test_to_unit_maps_the_bounds_to_zero_and_one_and_clamps():
    low, high = torch.tensor([-1.0]), torch.tensor([3.0])
    x = torch.tensor([-1.0, 1.0, 3.0, 5.0]).reshape(1, 1, 2, 2)
    assert to_unit(x, low, high).flatten().tolist() == [0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32), (2, 1, 11, 11)])
def test_psnr_and_ssim_agree_with_scikit_image(shape):
    """Ours are kept (batched torch, small images); scikit-image gives the same numbers."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    xs, ys = x.double().numpy(), y.double().numpy()
    want_ssim = [structural_similarity(xs[i], ys[i], data_range=1.0, channel_axis=0,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False) for i in range(len(x))]
    want_psnr = [peak_signal_noise_ratio(xs[i], ys[i], data_range=1.0) for i in range(len(x))]
    assert ssim(x, y).tolist() == pytest.approx(want_ssim, abs=1e-6)  # float32 rounding
    assert psnr(x, y).tolist() == pytest.approx(want_psnr, abs=1e-5)


def test_scikit_image_has_no_ssim_for_images_smaller_than_the_window():
    """Why ours stays: 8x8 digits get an SSIM here and an error from scikit-image."""
    from skimage.metrics import structural_similarity

    a = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert 0 < float(ssim(a, a * 0.5)[0]) < 1
    with pytest.raises(ValueError, match="win_size exceeds image extent"):
        structural_similarity(a[0, 0].double().numpy(), a[0, 0].double().numpy() * 0.5,
                              data_range=1.0, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
