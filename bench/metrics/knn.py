"""Weighted k-nearest-neighbour accuracy on frozen features: the ``knn`` metric family.

The evaluator scores it at every evaluated epoch, on the test split (``m_knn_top1``,
``m_knn_top5``) and on the validation hold-out (``m_val_knn_*``), with the labelled part of
the training split as the memory bank (``scores``).

The classifier is the InstDisc-style weighted kNN of lightly's
``lightly/utils/benchmarking/knn.py::knn_predict`` (copied there from the MoCo CIFAR-10 colab;
Wu et al. 2018, arXiv 1805.01978): cosine similarity of each query to an L2-normalised memory
bank, the ``k`` most similar bank entries vote for their class with weight ``exp(s / T)``, and
classes are ranked by their summed weight. Defaults k = 200, T = 0.1.

Two deliberate differences from lightly, neither of which changes a ranking:

* queries are processed in chunks so the (queries x bank) similarity matrix stays bounded
  (a 50k x 2048 bank with 10k queries would otherwise need a 2 GB similarity matrix), and votes
  are accumulated with ``scatter_add`` instead of a (queries*k x classes) one-hot tensor;
* weights are ``exp((s - s_max) / T)`` with the row's largest similarity ``s_max``: a positive
  per-query factor, so the ranking is unchanged, but small temperatures cannot overflow to inf.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.metrics._inputs import check_splits, labelled_rows

# Read by `bench.metrics.declared()` without importing this module: keep it a literal.
FAMILY: dict[str, Any] = {"scope": "accuracy", "keys": ("knn_top1", "knn_top5")}

# Elements of one (chunk x bank) similarity block: 2**25 float32 = 128 MiB, plus top-k buffers.
_MAX_BLOCK_ELEMENTS = 2**25


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64 (exact parity tests); everything else (bf16, fp16) runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def knn_class_scores(
    bank: Tensor,
    bank_labels: Tensor,
    query: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> Tensor:
    """Per-class vote weights (M, C) of one query block against an already normalised bank.

    ``bank`` (N, D) and ``query`` (M, D) must be L2-normalised and on the same device;
    ``bank_labels`` (N,) holds class indices in [0, num_classes). ``k`` must be <= N.
    """
    sim = query @ bank.T  # (M, N) cosine similarities
    top_sim, top_idx = sim.topk(k, dim=1)  # (M, k), sorted descending
    top_labels = bank_labels[top_idx]  # (M, k)
    # Subtracting the row maximum rescales every weight of a row by the same positive factor.
    weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
    scores = torch.zeros(query.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
    return scores.scatter_add_(1, top_labels, weights)


def knn_accuracy(
    bank: Tensor,
    bank_labels: Tensor,
    query: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (fractions in [0, 1]) of weighted kNN classification.

    Args:
        bank: (N, D) memory-bank features (e.g. backbone features of the labelled train subset).
        bank_labels: (N,) int labels; entries < 0 (unlabelled) are dropped from the bank.
        query: (M, D) features to classify (e.g. the test split).
        query_labels: (M,) int labels of the queries.
        num_classes: number of classes C; top-5 uses min(5, C) so it is 1.0 when C <= 5.
        k: neighbours; clipped to the bank size.
        temperature: T in the weight exp(s / T).
        chunk: queries per block; default keeps a block's similarity matrix near 2**25 entries.

    Runs on ``bank``'s device in float32 (float64 inputs stay float64). Returns (nan, nan) when
    there is no query or a feature is NaN/inf (a diverged encoder has no meaningful accuracy).
    Raises ValueError for mismatched shapes, an empty bank or labels >= num_classes.
    """
    check_splits("knn_accuracy", ("bank", "query", "bank_labels", "query_labels"), bank,
                 bank_labels, query, query_labels, num_classes)  # fmt: skip
    if k < 1 or temperature <= 0:
        raise ValueError(
            f"knn_accuracy needs k >= 1 and temperature > 0, got k={k}, temperature={temperature}."
        )
    device = bank.device
    bank, bank_labels = labelled_rows("knn_accuracy", bank, bank_labels, "an empty memory bank")
    if query.shape[0] == 0:
        return math.nan, math.nan
    dtype = _compute_dtype(bank)
    bank = bank.to(dtype)
    if not torch.isfinite(bank).all() or not torch.isfinite(query).all():
        return math.nan, math.nan
    bank = F.normalize(bank, dim=1)
    k = min(k, bank.shape[0])
    n_top = min(5, num_classes)
    if chunk is None:
        chunk = max(1, _MAX_BLOCK_ELEMENTS // bank.shape[0])
    hits1 = torch.zeros((), dtype=torch.long, device=device)
    hits5 = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, query.shape[0], chunk):
        q = F.normalize(query[start : start + chunk].detach().to(device, dtype), dim=1)
        y = query_labels[start : start + chunk].to(device).long()
        scores = knn_class_scores(bank, bank_labels, q, num_classes, k, temperature)
        # Rank all classes as lightly's knn_predict does (argsort), then keep the top min(5, C).
        ranked = scores.argsort(dim=1, descending=True)[:, :n_top]
        hits1 += (ranked[:, 0] == y).sum()
        hits5 += (ranked == y[:, None]).any(dim=1).sum()
    n = query.shape[0]
    return hits1.item() / n, hits5.item() / n


def scores(
    bank: Tensor,
    bank_y: Tensor,
    queries: dict[str, tuple[Tensor, Tensor]],
    num_classes: int,
    cfg: Any,
) -> dict[str, float]:
    """The family's entry point (bench.metrics): kNN top-1/top-5 of each query split, keyed
    `<prefix>knn_top1`, with the trial's `knn_k` and `knn_temperature`."""
    out: dict[str, float] = {}
    for prefix, (query, query_y) in queries.items():
        top1, top5 = knn_accuracy(
            bank, bank_y, query, query_y, num_classes, k=cfg.knn_k, temperature=cfg.knn_temperature
        )
        out[f"{prefix}knn_top1"], out[f"{prefix}knn_top5"] = top1, top5
    return out
