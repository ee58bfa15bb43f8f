"""Frozen-feature evaluations: pooled features, a multi-LR linear probe, logistic regression, kNN.

Features are computed once (eval mode, no grad) and cached; every probe then runs on the cache, so a
sweep over learning rates costs one pass of the backbone.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mimscale.engine.schedule import lr_at


def pool(encoder, x: torch.Tensor, mode: str = "multiblock", blocks: int = 0) -> torch.Tensor:
    """(B, D) image features. ``last``: the final map (after the final norm), mean-pooled.
    ``multiblock``: each block's output map (the last ``blocks`` blocks; 0 = all), layer-normalised per
    token (no affine: the blocks' scales differ by orders of magnitude), mean-pooled over space and
    concatenated (the demo's feasibility runs: this tracks pre-training quality far better than the last map alone)."""
    if mode == "last":
        return encoder.forward_features(x).float().mean(dim=(2, 3))
    if mode != "multiblock":
        raise ValueError(f"feature mode must be 'multiblock' or 'last', got '{mode}'")
    out = []
    maps = encoder.forward_intermediates(x)
    for m in maps[-blocks:] if blocks > 0 else maps:
        m = m.float().permute(0, 2, 3, 1)  # (B, h, w, C): normalise over channels, token by token
        out.append(F.layer_norm(m, m.shape[-1:]).mean(dim=(1, 2)))
    return torch.cat(out, dim=1)


@torch.no_grad()
def extract_features(encoder, loader, mode: str, device: torch.device,
                     blocks: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float32 features and (N,) labels of everything ``loader`` yields, in order, on CPU."""
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in loader:
        feats.append(pool(encoder, x.to(device, non_blocking=True), mode, blocks).cpu())
        labels.append(y)
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels).long()


def topk_accuracy(scores: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest scores; ks above the class count are skipped."""
    out = {}
    for k in ks:
        if k > scores.shape[-1] or (k > 1 and scores.shape[-1] < 5):
            continue
        top = scores.topk(k, dim=-1).indices
        out[f"top{k}"] = (top == y.view(-1, 1)).any(dim=-1).float().mean().item()
    return out


@torch.no_grad()
def knn_classify(train_x, train_y, test_x, num_classes: int, k: int = 20, t: float = 0.07,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(N_test, classes) vote scores: cosine similarity on L2-normalised features, the ``k`` nearest
    training samples each vote ``exp(sim / t)`` for their class (the DINO / InstDisc weighted kNN)."""
    train_x = F.normalize(train_x.to(device, torch.float32), dim=1)
    test_x = F.normalize(test_x.to(device, torch.float32), dim=1)
    train_y = train_y.to(device)
    k = min(k, len(train_x))
    # Bounded memory: about 2^27 similarities (512 MB) per chunk of test rows, even for ImageNet-1K.
    chunk = max(1, min(4096, (1 << 27) // max(1, len(train_x))))
    scores = []
    for lo in range(0, len(test_x), chunk):
        sim = test_x[lo:lo + chunk] @ train_x.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes, device=device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / t).exp())
        scores.append(votes.cpu())
    return torch.cat(scores)


def knn_eval(train_x, train_y, test_x, test_y, num_classes: int, k: int = 20, t: float = 0.07,
             device: torch.device | str = "cpu") -> dict:
    return topk_accuracy(knn_classify(train_x, train_y, test_x, num_classes, k, t, device), test_y)


def _split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 0x11E]).permutation(n)
    n_val = int(round(n * fraction))
    return perm[n_val:], perm[:n_val]


class MultiLRLinear(torch.nn.Module):
    """BatchNorm1d(affine=False) then one linear head per learning rate, as one batched matmul.

    The heads share nothing but the (parameter-free) normalisation, so their gradients are independent;
    SGD with a per-head LR is done by scaling each head's gradient by its LR and stepping with LR 1
    times the schedule (exactly SGD-with-momentum at that LR: the momentum buffer is linear).
    """

    def __init__(self, dim: int, num_classes: int, lrs: list[float]):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(dim, affine=False)
        self.weight = torch.nn.Parameter(torch.empty(len(lrs), dim, num_classes).normal_(0, 0.01))
        self.bias = torch.nn.Parameter(torch.zeros(len(lrs), 1, num_classes))
        self.register_buffer("lr_scale", torch.tensor(lrs, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # -> (L, B, classes)
        return torch.baddbmm(self.bias, self.bn(x).unsqueeze(0).expand(len(self.weight), -1, -1), self.weight)

    def scale_grads(self) -> None:
        for p in (self.weight, self.bias):
            p.grad.mul_(self.lr_scale)


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, lrs: list[float], epochs: int = 100,
                 batch_size: int = 256, weight_decay: float = 0.0, holdout: float = 0.1, seed: int = 0,
                 device: torch.device | str = "cpu") -> dict:
    """Train one BN + linear head per LR in one pass over the cached features (SGD, momentum 0.9,
    cosine to 0, LR per 256 samples). The LR is chosen on a held-out ``holdout`` fraction of the
    training features (never on the test set); the report gives its test accuracy and every LR's."""
    torch.manual_seed(seed)
    fit_idx, val_idx = _split_holdout(len(train_x), holdout, seed) if holdout > 0 else (
        np.arange(len(train_x)), np.arange(0))
    lrs_scaled = [lr * batch_size / 256 for lr in lrs]
    model = MultiLRLinear(train_x.shape[1], num_classes, lrs_scaled).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=weight_decay)
    x_fit, y_fit = train_x[fit_idx].to(device), train_y[fit_idx].to(device)
    steps_per_epoch = max(1, math.ceil(len(x_fit) / batch_size))
    total = epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_fit), generator=gen).to(device)
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            logits = model(x_fit[idx])
            # Sum over heads: each head's gradient is that of its own mean loss.
            loss = F.cross_entropy(logits.flatten(0, 1), y_fit[idx].repeat(len(lrs)), reduction="sum") / len(idx)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            model.scale_grads()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, 1.0, 0, 0.0, 0.0)
            opt.step()
            step += 1
    model.eval()
    with torch.no_grad():
        test_scores = model(test_x.to(device)).cpu()
        val_scores = model(train_x[val_idx].to(device)).cpu() if len(val_idx) else None
    per_lr = [topk_accuracy(s, test_y) for s in test_scores]
    if val_scores is not None:
        val_acc = [topk_accuracy(s, train_y[val_idx], ks=(1,))["top1"] for s in val_scores]
        best = int(np.argmax(val_acc))  # ties -> the smaller LR (argmax takes the first)
    else:
        val_acc, best = None, int(np.argmax([r["top1"] for r in per_lr]))
    return {**per_lr[best], "best_lr": lrs[best], "lrs": list(lrs),
            "top1_per_lr": [r["top1"] for r in per_lr], "holdout_top1_per_lr": val_acc}


def logistic_probe(train_x, train_y, test_x, test_y, num_classes: int, c: float = 1.0, max_iter: int = 1000,
                   seed: int = 0) -> dict:
    """Standardised features + multinomial logistic regression (scikit-learn, L-BFGS): convex, so no LR
    to choose; the demo study's probe. CPU only, fits small feature sets (up to ~10^5 x 10^4)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(train_x.numpy()), train_y.numpy())
    proba = torch.from_numpy(clf.predict_proba(scaler.transform(test_x.numpy()))).float()
    scores = torch.full((len(test_x), num_classes), -1.0)
    scores[:, torch.from_numpy(clf.classes_).long()] = proba  # classes absent from training never win
    return {**topk_accuracy(scores, test_y), "C": c}
