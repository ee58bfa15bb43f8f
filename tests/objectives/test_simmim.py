import numpy as np
import torch
import torch.nn as nn

from mimscale.masking import MaskGenerator
from mimscale.objectives.simmim import SimMIM, normalize_target


class TinyEncoder(nn.Module):
    """A real (if small) backbone with the interface SimMIM needs: patchify conv + mask token."""

    def __init__(self, patch=4, dim=16):
        super().__init__()
        self.patch_size = self.stride = patch
        self.num_features = dim
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.mask_token = nn.Parameter(torch.randn(dim))

    def no_weight_decay(self):
        return {"mask_token"}

    def forward_features(self, x, mask=None):
        x = self.proj(x)
        if mask is not None:
            w = mask.unsqueeze(1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.view(1, -1, 1, 1) * w
        return x


def _batch(seed=0, n=2, size=32):
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, 3, size, size, generator=g)
    gen = MaskGenerator(size, 8, 4, 0.6)
    mask = torch.stack([torch.from_numpy(gen(np.random.default_rng([seed, i]))) for i in range(n)])
    return img, mask


def test_loss_formula_and_shapes():
    torch.manual_seed(0)
    model = SimMIM(TinyEncoder())
    img, mask = _batch()
    out = model(img, mask)
    assert out.pred.shape == img.shape and out.mask.shape == (2, 1, 32, 32)
    m = out.mask
    expected = ((img - out.pred).abs() * m).sum() / (m.sum() + 1e-5) / 3
    torch.testing.assert_close(out.loss, expected)
    assert out.mask.sum() == 2 * 10 * 64  # 10 of 16 units, 8x8 px each


def test_loss_ignores_unmasked_pixels():
    torch.manual_seed(0)
    model = SimMIM(TinyEncoder())
    img, mask = _batch()
    out = model(img, mask)
    # Change the prediction only where the mask is 0: the loss must not move.
    decoder_out = out.pred.detach().clone()
    noise = torch.randn_like(decoder_out) * (1 - out.mask)
    err_a = ((out.target - decoder_out).abs() * out.mask).sum()
    err_b = ((out.target - (decoder_out + noise)).abs() * out.mask).sum()
    assert torch.equal(err_a, err_b)
    # The same through the module: a decoder that is wildly wrong on visible pixels only.
    mask_px = out.mask
    model.decoder.register_forward_hook(lambda mod, inp, o: o + 100.0 * (1 - mask_px))
    out2 = model(img, mask)
    torch.testing.assert_close(out2.loss, out.loss)


def test_norm_target_matches_direct_per_pixel_computation():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 2, 12, 10, generator=g)
    window = 5
    got = normalize_target(img, window)
    r = window // 2
    for c in range(2):
        for y in range(12):
            for x in range(10):
                patch = img[0, c, max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].double().flatten()
                n = patch.numel()
                mean = patch.mean()
                var = max(0.0, float((patch**2).mean() - mean**2) * n / (n - 1))
                want = (img[0, c, y, x].double() - mean) / (var + 1e-6) ** 0.5
                assert abs(float(got[0, c, y, x]) - float(want)) < 1e-4, (c, y, x)


def test_norm_target_changes_loss_scale_and_is_used():
    torch.manual_seed(0)
    enc = TinyEncoder()
    a = SimMIM(enc, norm_target=False)
    b = SimMIM(enc, norm_target=True, norm_target_window=7)
    b.decoder.load_state_dict(a.decoder.state_dict())
    img, mask = _batch()
    img = img * 0.1 + 2.0  # far from standardised: the normalised target differs a lot
    assert not torch.allclose(a(img, mask).loss, b(img, mask).loss)
    torch.testing.assert_close(b(img, mask).target, normalize_target(img, 7))
