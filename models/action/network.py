"""The GRU action network in torch (training extra only): the model, its training loop, magnitude pruning.

GRU(128, seq) -> Dropout -> GRU(64) -> Dropout -> Dense(64, relu) -> Dense(6); trained with Adam and a one-cycle
learning rate, each window mirrored (left/right joints swapped) with probability 1/2; no-action windows (label -1)
are trained toward the uniform distribution. Pruning keeps the largest weights of each GRU/dense matrix and
fine-tunes with the others held at zero. The ONNX graph is built from the weights in :mod:`models.action.export`.
"""
from __future__ import annotations

import random

import numpy as np

from .dataset import CLASSES


def set_seeds(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(n_features: int, n_classes: int, dropout: float = 0.2):
    import torch
    from torch import nn

    class GruHar(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru1 = nn.GRU(n_features, 128, batch_first=True)
            self.drop1 = nn.Dropout(dropout)
            self.gru2 = nn.GRU(128, 64, batch_first=True)
            self.drop2 = nn.Dropout(dropout)
            self.fc1 = nn.Linear(64, 64)
            self.fc2 = nn.Linear(64, n_classes)

        def forward(self, x):
            s, _ = self.gru1(x)
            s = self.drop1(s)
            _, h = self.gru2(s)
            h = self.drop2(h[0])
            return self.fc2(torch.relu(self.fc1(h)))

    return GruHar()


def torch_probs(model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch
    model.eval()
    with torch.no_grad():
        out = [torch.softmax(model(torch.from_numpy(x[i:i + batch])), -1).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


PRUNABLE = ("gru1.weight_ih_l0", "gru1.weight_hh_l0", "gru2.weight_ih_l0", "gru2.weight_hh_l0",
            "fc1.weight", "fc2.weight")


def magnitude_masks(model, sparsity: float) -> dict:
    import torch
    masks = {}
    for name, p in model.named_parameters():
        if name in PRUNABLE:
            k = int(round(sparsity * p.numel()))
            if k <= 0:
                continue
            thr = p.detach().abs().flatten().kthvalue(k).values
            masks[name] = (p.detach().abs() > thr).to(torch.float32)
    return masks


def apply_masks(model, masks: dict) -> None:
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])


def sparsity_of(weights: dict) -> dict:
    per = {k: float((weights[k] == 0).mean()) for k in PRUNABLE}
    tot = sum(weights[k].size for k in PRUNABLE)
    per["overall_prunable"] = float(sum((weights[k] == 0).sum() for k in PRUNABLE) / tot)
    return per


def fit(model, X: np.ndarray, Xf: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int,
        batch: int = 128, masks: dict | None = None, desc: str = "train", progress: bool = True,
        max_steps: int | None = None, n_classes: int = len(CLASSES)) -> list[float]:
    """Adam + one-cycle LR; each sample is mirrored (left/right swapped) with probability 1/2.

    Label -1 marks idle windows (no action): their target is the uniform distribution, so the
    model learns to be unsure outside the six actions (used by the "uncertain" threshold)."""
    import torch
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = max(1, int(np.ceil(len(y) / batch)))
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 2), pct_start=0.15)
    losses = []
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0)
    for _ in range(epochs):
        model.train()
        perm = rng.permutation(len(y))
        for i in range(0, len(y), batch):
            if step >= total:
                break
            idx = perm[i:i + batch]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None], Xf[idx], X[idx])
            xb = xb + rng.normal(0, 0.01, xb.shape).astype(np.float32) * (xb != 0)
            yb = y[idx]
            target = np.full((len(idx), n_classes), 1.0 / n_classes, np.float32)
            target[yb >= 0] = 0.0
            target[np.nonzero(yb >= 0)[0], yb[yb >= 0]] = 1.0
            logp = torch.log_softmax(model(torch.from_numpy(xb.astype(np.float32))), -1)
            loss = -(torch.from_numpy(target) * logp).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if masks:
                apply_masks(model, masks)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return losses


def state_numpy(model) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
