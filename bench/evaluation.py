"""Evaluation of a trial's frozen encoder: kNN, probes and geometry, one record per label fraction.

The trainer calls `Evaluator.evaluate(encoder, final=...)`; everything here is inference on the
un-augmented data (plus two fixed augmented views of the geometry subset, for alignment).
The labelled subsets come from `split_seed`, so every loss and trial seed is scored on the same
labelled samples.

Every accuracy is measured twice, on the validation hold-out (`m_val_<metric>`, the number that
selects lrs and drives `bench tune`) and on the test split (`m_<metric>`, reported at the
selected setting only). The kNN bank and the probes' training set are the labelled part of the
training split, which excludes the validation hold-out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bench.config import TrialConfig
from bench.data import Dataset
from bench.data.augment import build_augment, normalize
from bench.data.split import labelled_mask
from bench.metrics import GEOMETRY_KEYS, geometry, knn_accuracy
from bench.metrics.probes import fit_probe

# CLOA's fine-tuning heads (section 4): CIFAR-10 256-128-64, CIFAR-100 512-1024-1024.
_FFN_DEFAULTS = {"cifar100": (512, 1024, 1024)}
_FFN_FALLBACK = (256, 128, 64)


def ffn_widths(cfg: TrialConfig) -> tuple[int, ...]:
    if cfg.ffn_hidden:
        return tuple(cfg.ffn_hidden)
    return _FFN_DEFAULTS.get(cfg.dataset, _FFN_FALLBACK)


@torch.no_grad()
def embed(encoder: nn.Module, x: Tensor, dataset: Dataset, batch_size: int, amp: bool) -> tuple[Tensor, Tensor]:
    """Backbone features h and projections z of `x` (device tensor), in float32, in chunks."""
    hs, zs = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = normalize(x[start : start + batch_size], dataset)
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
            h, z = encoder(xb)
        hs.append(h.float())
        zs.append(z.float())
    return torch.cat(hs), torch.cat(zs)


class Evaluator:
    """Holds the device-resident eval data and the fixed subsets; stateless between calls."""

    def __init__(self, cfg: TrialConfig, dataset: Dataset, train_x: Tensor, test_x: Tensor,
                 device: torch.device, amp: bool) -> None:
        self.cfg, self.dataset, self.device, self.amp = cfg, dataset, device, amp
        self.train_x, self.test_x = train_x, test_x
        self.train_y = dataset.train_y.to(device)
        self.test_y = dataset.test_y.to(device)
        # The validation hold-out (empty with val_fraction 0): scored like test, never trained on.
        self.val_x = (dataset.val_x if dataset.val_x is not None else train_x[:0]).to(device)
        self.val_y = (dataset.val_y if dataset.val_y is not None else self.train_y[:0]).to(device)
        self.masks = {
            f: labelled_mask(dataset.train_y, f, cfg.split_seed).to(device)
            for f in cfg.label_fractions
        }
        self.bank_idx = self.masks[max(self.masks)].nonzero().squeeze(1)
        # A fixed subset for geometry, the same for every trial of a sweep (drawn from split_seed).
        g = torch.Generator().manual_seed(cfg.split_seed + 7919)
        n = train_x.shape[0]
        self.geo_idx = torch.randperm(n, generator=g)[: min(cfg.geometry_samples, n)].to(device)
        self.augment = build_augment(cfg.augment, dataset)
        self.batch = max(256, cfg.batch_size)

    @torch.no_grad()
    def _geometry(self, encoder: nn.Module) -> dict[str, float]:
        x = self.train_x[self.geo_idx]
        y = self.train_y[self.geo_idx]
        h, z = embed(encoder, x, self.dataset, self.batch, self.amp)
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.split_seed + 104729)
        va, vb = self.augment(x, gen)
        ha, za = self._embed_views(encoder, va)
        hb, zb = self._embed_views(encoder, vb)
        out: dict[str, float] = {}
        for prefix, emb, a, b in (("h", h, ha, hb), ("z", z, za, zb)):
            for key, value in geometry(emb, y, a, b).items():
                out[f"m_{prefix}_{key}"] = value
        return out

    @torch.no_grad()
    def _embed_views(self, encoder: nn.Module, v: Tensor) -> tuple[Tensor, Tensor]:
        hs, zs = [], []
        for start in range(0, v.shape[0], self.batch):
            with torch.autocast(v.device.type, dtype=torch.bfloat16, enabled=self.amp):
                h, z = encoder(v[start : start + self.batch])
            hs.append(h.float())
            zs.append(z.float())
        return torch.cat(hs), torch.cat(zs)

    @torch.no_grad()
    def evaluate(self, encoder: nn.Module, final: bool) -> dict[float, dict[str, float]]:
        """Metrics per label fraction; probes only when `final`."""
        was_training = encoder.training
        encoder.eval()
        try:
            # The label split is nested, so the largest fraction's labelled samples hold every
            # bank: embed only those, not the whole training set.
            bank_idx = self.bank_idx
            h_bank, _ = embed(encoder, self.train_x[bank_idx], self.dataset, self.batch, self.amp)
            queries = {
                prefix: (embed(encoder, x, self.dataset, self.batch, self.amp)[0], y)
                for prefix, x, y in (("m_", self.test_x, self.test_y), ("m_val_", self.val_x, self.val_y))
                if x.shape[0]  # no validation split: its columns stay NaN
            }
            shared = {**self._geometry(encoder), "m_num_classes": float(self.dataset.num_classes)}
            per_fraction = {}
            for fraction, mask in self.masks.items():
                sub = mask[bank_idx]
                per_fraction[fraction] = {
                    **shared,
                    **self._scores(h_bank[sub], self.train_y[bank_idx][sub], queries, final),
                }
            return per_fraction
        finally:
            encoder.train(was_training)

    def _scores(self, bank: Tensor, bank_y: Tensor, queries: dict[str, tuple[Tensor, Tensor]],
                final: bool) -> dict[str, float]:
        """kNN (and, when `final`, probe) accuracies for each query split, keyed prefix+metric."""
        cfg, k = self.cfg, self.dataset.num_classes
        if not (torch.isfinite(bank).all() and all(torch.isfinite(q).all() for q, _ in queries.values())):
            return {}
        out: dict[str, float] = {}
        for prefix, (query, query_y) in queries.items():
            top1, top5 = knn_accuracy(bank, bank_y, query, query_y, k,
                                      k=cfg.knn_k, temperature=cfg.knn_temperature)
            out[f"{prefix}knn_top1"], out[f"{prefix}knn_top5"] = top1, top5
        if final and cfg.probe_epochs > 0:
            with torch.enable_grad():
                for name, hidden in (("linear", ()), ("ffn", ffn_widths(cfg))):
                    probe = fit_probe(bank, bank_y, k, hidden=hidden, epochs=cfg.probe_epochs,
                                      batch_size=cfg.probe_batch_size, lr=cfg.probe_lr,
                                      seed=cfg.seed, features=cfg.probe_features,
                                      optimizer=cfg.probe_optimizer)
                    for prefix, (query, query_y) in queries.items():
                        t1, t5 = probe.score(query, query_y)
                        out[f"{prefix}{name}_top1"], out[f"{prefix}{name}_top5"] = t1, t5
        return out


ACCURACY_KEYS: Sequence[str] = (
    "knn_top1", "knn_top5", "linear_top1", "linear_top5", "ffn_top1", "ffn_top5",
)  # fmt: skip
EVAL_KEYS: Sequence[str] = (
    *(f"m_{k}" for k in ACCURACY_KEYS),  # test split
    *(f"m_val_{k}" for k in ACCURACY_KEYS),  # validation hold-out
    "m_num_classes",
    *(f"m_{p}_{k}" for p in ("h", "z") for k in GEOMETRY_KEYS),
)


def empty_eval() -> dict[str, float]:
    return dict.fromkeys(EVAL_KEYS, math.nan)
