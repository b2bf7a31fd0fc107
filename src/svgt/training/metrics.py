"""Binary discrimination metrics (accuracy, F1, AUROC) without extra dependencies."""

from __future__ import annotations

import torch


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    labels = labels.bool()
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).float().sum()
    ties = (pos[:, None] == neg[None, :]).float().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def auroc_between(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """`auroc` of two samples: how often a `positive` score is above a `negative` one."""
    labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))])
    return auroc(torch.cat([positive, negative]), labels)


def binary_metrics(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.0) -> dict[str, float]:
    """Accuracy, F1 (positive = unsafe) and AUROC of scores where `s > threshold` predicts unsafe."""
    pred = scores > threshold
    truth = labels.bool()
    tp = float((pred & truth).sum())
    fp = float((pred & ~truth).sum())
    fn = float((~pred & truth).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"acc": float((pred == truth).float().mean()), "f1": f1, "auroc": auroc(scores, labels)}
