"""Model FLOPs per image for one training step (forward + backward), counted by torch's flop counter."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def flops_per_image(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                    device: torch.device) -> float:
    """FLOPs of forward+backward on a one-image batch (matmuls and convs; what MFU conventionally counts).

    Gradients are cleared after, and the RNG state is restored so counting does not shift the run's
    random stream (drop path draws random numbers).
    """
    img, mask = batch
    img, mask = img[:1].to(device), mask[:1].to(device)
    rng = torch.get_rng_state()
    counter = FlopCounterMode(display=False)
    with counter:
        model(img, mask).loss.backward()
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)
    return float(counter.get_total_flops())
