"""SimMIM: a backbone, a linear decoder and an L1 loss on masked pixels (docs/METHOD.md, Decoder and loss).

``SimMIM(encoder)(img, mask)`` returns a :class:`SimMIMOutput`. The loss is computed in fp32 even
under autocast: it is a mean over ~10^5 small absolute errors per image, where bf16 rounding of the
sum would be visible at the precision the study compares runs (differences of 0.005).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimscale.masking import upsample_mask

# SimMIM's loss divides by (masked pixels + eps): eps only guards an all-visible batch.
MASK_EPS = 1e-5
# Variance floor of the normalised target, in squared normalised-pixel units.
NORM_TARGET_EPS = 1e-6


def local_stats(img: torch.Tensor, window: int = 47) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel, per-channel mean and std over the local ``window`` x ``window`` neighbourhood.

    mean and mean-of-squares exclude padding (count_include_pad=False); the variance gets the
    n/(n-1) correction with n the number of valid pixels in the window, then is clamped at zero.
    """
    if window % 2 != 1:
        raise ValueError(f"norm_target window must be odd, got {window}")
    img = img.float()
    pad = window // 2
    mean = F.avg_pool2d(img, window, stride=1, padding=pad, count_include_pad=False)
    mean_sq = F.avg_pool2d(img * img, window, stride=1, padding=pad, count_include_pad=False)
    ones = torch.ones_like(img[:1, :1])
    count = F.avg_pool2d(ones, window, stride=1, padding=pad, count_include_pad=True) * window**2
    var = (mean_sq - mean * mean) * (count / (count - 1))
    return mean, torch.sqrt(var.clamp(min=0.0) + NORM_TARGET_EPS)


def normalize_target(img: torch.Tensor, window: int = 47) -> torch.Tensor:
    """SimMIM's normalised target: every pixel and channel standardised over its local window."""
    mean, std = local_stats(img, window)
    return (img.float() - mean) / std


def masked_l1_sums(pred: torch.Tensor, target: torch.Tensor, mask_px: torch.Tensor):
    """Per-sample (sum of |target - pred| over masked pixels and channels, masked pixel count)."""
    err = (target.float() - pred.float()).abs() * mask_px
    return err.flatten(1).sum(1), mask_px.flatten(1).sum(1)


@dataclass
class SimMIMOutput:
    loss: torch.Tensor  # scalar: sum(|t-p| * m) / (sum(m) + eps) / channels
    pred: torch.Tensor  # (B, C, H, W) reconstruction, in target units
    mask: torch.Tensor  # (B, 1, H, W) pixel mask, 1 = masked
    target: torch.Tensor  # (B, C, H, W) what pred is compared against
    error_sum: torch.Tensor  # (B,) masked absolute error summed over pixels and channels
    mask_sum: torch.Tensor  # (B,) masked pixels per sample


class SimMIM(nn.Module):
    """Encoder + ``Conv2d(num_features, stride^2 * C, 1)`` + ``PixelShuffle(stride)`` decoder."""

    def __init__(self, encoder: nn.Module, in_chans: int = 3, norm_target: bool = False,
                 norm_target_window: int = 47):
        super().__init__()
        self.encoder = encoder
        self.in_chans = in_chans
        self.norm_target = norm_target
        self.norm_target_window = norm_target_window
        stride = encoder.stride
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.num_features, stride**2 * in_chans, kernel_size=1),
            nn.PixelShuffle(stride),
        )

    def no_weight_decay(self) -> set[str]:
        """The encoder's special exemptions; the decoder has none beyond the engine's 1-D/bias rule."""
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def forward(self, img: torch.Tensor, mask: torch.Tensor) -> SimMIMOutput:
        """img: (B, C, H, W) normalised image; mask: (B, H/patch, W/patch), 1 = masked."""
        features = self.encoder.forward_features(img, mask)
        pred = self.decoder(features)
        mask_px = upsample_mask(mask, self.encoder.patch_size).to(pred.dtype)
        if mask_px.shape[-2:] != img.shape[-2:]:
            raise ValueError(f"mask covers {tuple(mask_px.shape[-2:])} pixels, image is {tuple(img.shape[-2:])}")
        target = normalize_target(img, self.norm_target_window) if self.norm_target else img
        error_sum, mask_sum = masked_l1_sums(pred, target, mask_px.float())
        loss = error_sum.sum() / (mask_sum.sum() + MASK_EPS) / self.in_chans
        return SimMIMOutput(loss=loss, pred=pred, mask=mask_px, target=target,
                            error_sum=error_sum, mask_sum=mask_sum)
