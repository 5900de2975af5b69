"""Evaluation of a trial's frozen encoder: kNN, probes and geometry, one record per label fraction.

The trainer calls `Evaluator.evaluate(encoder, final=...)`; everything here is inference on the
un-augmented data (plus two fixed augmented views of the geometry subset, for alignment).
The labelled subsets come from `split_seed`, so every loss and trial seed is scored on the same
labelled samples.

What is measured is the metric families of `bench.metrics`, each one module found there:
accuracy families (kNN at every evaluation, the probes at the final epoch) score the frozen
backbone features, embedding families (geometry) measure the backbone features (`m_h_*`) and
the projections (`m_z_*`) of a fixed subset. Every accuracy is measured twice, on the
validation hold-out (`m_val_<metric>`, the number that selects lrs and drives `bench tune`) and
on the test split (`m_<metric>`, reported at the selected setting only). The kNN bank and the
probes' training set are the labelled part of the training split, which excludes the
validation hold-out.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor, nn

from bench import metrics
from bench.config import TrialConfig
from bench.data import Dataset
from bench.data.augment import build_augment, normalize
from bench.data.split import labelled_mask

# Every record carries every evaluation key (NaN where not computed at that epoch).
EVAL_KEYS: Sequence[str] = (
    *metrics.columns("accuracy"),
    "m_num_classes",
    *metrics.columns("embedding"),
)


def empty_eval() -> dict[str, float]:
    return dict.fromkeys(EVAL_KEYS, math.nan)


def families(scope: str) -> list[tuple[metrics.Family, ModuleType]]:
    """The metric families of `scope` and their modules (imported here, where torch is)."""
    return [
        (f, importlib.import_module(f"bench.metrics.{f.module}")) for f in metrics.families(scope)
    ]


@torch.no_grad()
def embed(
    encoder: nn.Module, x: Tensor, dataset: Dataset, batch_size: int, amp: bool
) -> tuple[Tensor, Tensor]:
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

    def __init__(
        self,
        cfg: TrialConfig,
        dataset: Dataset,
        train_x: Tensor,
        test_x: Tensor,
        device: torch.device,
        amp: bool,
    ) -> None:
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
        self.accuracy = [(f, m) for f, m in families("accuracy") if f.is_on(cfg)]
        self.embedding = families("embedding")

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
            for family, module in self.embedding:
                values = module.measure(emb, y, a, b)
                out.update({f"m_{prefix}_{key}": values[key] for key in family.keys})
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
                for prefix, x, y in (
                    ("m_", self.test_x, self.test_y),
                    ("m_val_", self.val_x, self.val_y),
                )
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

    def _scores(
        self, bank: Tensor, bank_y: Tensor, queries: dict[str, tuple[Tensor, Tensor]], final: bool
    ) -> dict[str, float]:
        """Every accuracy family's scores for each query split (final-only families when
        `final`), keyed prefix+metric; none when a feature is not finite."""
        if not (
            torch.isfinite(bank).all() and all(torch.isfinite(q).all() for q, _ in queries.values())
        ):
            return {}
        out: dict[str, float] = {}
        for family, module in self.accuracy:
            if final or not family.final_only:
                out.update(module.scores(bank, bank_y, queries, self.dataset.num_classes, self.cfg))
        return out
