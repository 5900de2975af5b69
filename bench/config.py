"""Trial configuration: one frozen dataclass, its flat form, and its validation.

A `TrialConfig` is everything `run_trial` needs and nothing about where it runs. Its flat form
(`to_flat`) is what Ray sees and what names the Parquet `p_*` columns, so every field here is a
column in the results store (dict-valued fields are stored as canonical JSON).

Sweep expansion (YAML -> list of TrialConfig) lives in `bench.space`; this module stays free of
file handling so that `run_trial` and the store can share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

AUGMENT_PRESETS = ("auto", "simclr", "cloa", "none")
OPTIMIZERS = ("sgd", "lars", "adamw")
PROBE_FEATURES = ("standardized", "raw")
PROBE_OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
LR_SCALINGS = ("absolute", "per256")
DEVICES = ("auto", "cpu", "cuda")
BATCH_SAMPLERS = ("random", "class")


class ConfigError(ValueError):
    """Bad user input in a config: the message is one sentence naming the key and the value."""


@dataclass(frozen=True)
class TrialConfig:
    """One trial: pretraining with one loss at one lr/batch size/seed, evaluated at one or more
    label fractions.

    `label_fractions` are the fractions the trial is *evaluated* at (kNN bank, probes). The loss
    sees labels only if it uses them, and then of `pretrain_fraction` of the training set:
    `min(min(label_fractions), pretrain_label_fraction or 1)`. Trials of one loss that pretrain on
    identical labels are grouped by `bench.space.expand` into one trial evaluated at many
    fractions.
    """

    # loss
    loss: str = "infonce"
    loss_params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    # data
    dataset: str = "digits"
    dataset_params: Mapping[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    download: bool = False
    augment: str = "auto"  # preset name; "auto" = simclr for images, sign flip + noise for vectors
    split_seed: int = 0  # draws the labelled subset: the same for every loss and trial seed
    # Stratified hold-out carved from train (from split_seed) on which everything is selected;
    # pretraining, kNN banks and probes never see it. 0 = no validation split.
    val_fraction: float = 0.1
    label_fractions: tuple[float, ...] = (1.0,)
    pretrain_label_fraction: float | None = None  # cap on the labels the loss may see
    # model
    backbone: str = "mlp"  # resnet18 | resnet50 | mlp
    cifar_stem: bool = True  # 3x3 stride-1 first conv, no max-pool (small images)
    mlp_hidden: tuple[int, ...] = (512, 512, 512)  # MLP backbone widths (CLOA section 3)
    projector: tuple[int, ...] = (512, 128)  # projector MLP widths; () = identity
    # optimisation
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_scaling: str = "absolute"  # "per256": effective lr = lr * batch_size / 256
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    epochs: int = 10
    batch_size: int = 256
    grad_clip: float | None = None
    # batches: "random" = slices of a random permutation of the training set; "class" = P =
    # classes_per_batch classes x batch_size / P samples each, drawn every step from the samples
    # whose labels the loss may see (the SimO authors' batches; needs a loss that uses labels)
    batch_sampler: str = "random"
    classes_per_batch: int | None = None  # P, only with batch_sampler "class"
    # evaluation
    eval_every: int = 1
    knn_k: int = 200
    knn_temperature: float = 0.1
    probe_epochs: int = 100
    ffn_hidden: tuple[int, ...] | None = None  # None = CLOA's widths for the dataset
    # Probe recipe (bench.metrics.probes): "standardized" features + AdamW is the harness's
    # default; CLOA fine-tunes on "raw" features with SGD at batch 32, which keeps the scale a
    # collapsed representation lost.
    probe_features: str = "standardized"
    probe_optimizer: str = "adamw"
    probe_lr: float | None = None  # None = the recipe's default (bench.metrics.probes)
    probe_batch_size: int = 256
    geometry_samples: int = 2048  # fixed evaluation subset for the geometry metrics
    # runtime
    device: str = "auto"
    compile: bool = False
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def pretrain_fraction(self) -> float:
        """Fraction of the training set whose labels the loss may see (if it uses labels)."""
        cap = 1.0 if self.pretrain_label_fraction is None else self.pretrain_label_fraction
        return min(min(self.label_fractions), cap)

    @property
    def effective_lr(self) -> float:
        return self.lr * self.batch_size / 256 if self.lr_scaling == "per256" else self.lr

    def to_flat(self) -> dict[str, Any]:
        """Flat, JSON-friendly dict: tuples become lists, mappings stay mappings."""
        flat = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in flat.items()}

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], source: str = "config") -> TrialConfig:
        """Inverse of `to_flat`; an unknown key is a ConfigError naming it and `source`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(names))}."
            )
        kwargs = {k: _coerce(k, v, source) for k, v in flat.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def trial_id(self) -> str:
        """Stable id from the content: the same config gets the same id on every machine."""
        blob = json.dumps(self.to_flat(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


_TUPLE_FIELDS = {"label_fractions", "mlp_hidden", "projector", "ffn_hidden"}


def _coerce(key: str, value: Any, source: str) -> Any:
    if key in _TUPLE_FIELDS and value is not None:
        if isinstance(value, (int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key {key!r} must be a list, got {value!r}.")
        return tuple(value)
    if key in ("loss_params", "dataset_params"):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: key {key!r} must be a mapping, got {value!r}.")
        return dict(value)
    return value


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} has value {value!r}; it must be {allowed}.")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _validate(c: TrialConfig) -> None:
    _check(isinstance(c.loss, str) and c.loss != "", "loss", c.loss, "a loss name")
    _check(isinstance(c.seed, int) and not isinstance(c.seed, bool), "seed", c.seed, "an integer")
    _check(isinstance(c.split_seed, int), "split_seed", c.split_seed, "an integer")
    _check(c.augment in AUGMENT_PRESETS, "augment", c.augment, f"one of {AUGMENT_PRESETS}")
    _check(len(c.label_fractions) > 0, "label_fraction", c.label_fractions, "non-empty")
    for f in c.label_fractions:
        _check(_is_num(f) and 0 < f <= 1, "label_fraction", f, "in (0, 1]")
    if c.pretrain_label_fraction is not None:
        p = c.pretrain_label_fraction
        _check(_is_num(p) and 0 <= p <= 1, "pretrain_label_fraction", p, "in [0, 1] or null")
    _check(c.optimizer in OPTIMIZERS, "optimizer", c.optimizer, f"one of {OPTIMIZERS}")
    _check(c.schedule in SCHEDULES, "schedule", c.schedule, f"one of {SCHEDULES}")
    _check(c.lr_scaling in LR_SCALINGS, "lr_scaling", c.lr_scaling, f"one of {LR_SCALINGS}")
    _check(_is_num(c.lr) and c.lr > 0, "lr", c.lr, "a positive number")
    _check(_is_num(c.momentum) and 0 <= c.momentum < 1, "momentum", c.momentum, "in [0, 1)")
    _check(_is_num(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay, ">= 0")
    for key in ("epochs", "batch_size", "eval_every", "knn_k", "geometry_samples"):
        v = getattr(c, key)
        _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, key, v, "an integer >= 1")
    _check(c.batch_size >= 2, "batch_size", c.batch_size, "at least 2 (two views need a pair)")
    for key in ("warmup_epochs", "probe_epochs"):
        v = getattr(c, key)
        _check(isinstance(v, int) and v >= 0, key, v, "an integer >= 0")
    _check(_is_num(c.knn_temperature) and c.knn_temperature > 0, "knn_temperature",
           c.knn_temperature, "a positive number")
    _check(_is_num(c.val_fraction) and 0 <= c.val_fraction < 0.5, "val_fraction", c.val_fraction,
           "in [0, 0.5)")
    _check(c.probe_features in PROBE_FEATURES, "probe_features", c.probe_features,
           f"one of {PROBE_FEATURES}")
    _check(c.probe_optimizer in PROBE_OPTIMIZERS, "probe_optimizer", c.probe_optimizer,
           f"one of {PROBE_OPTIMIZERS}")
    if c.probe_lr is not None:
        _check(_is_num(c.probe_lr) and math.isfinite(c.probe_lr) and c.probe_lr > 0, "probe_lr",
               c.probe_lr, "a positive number or null")
    _check(isinstance(c.probe_batch_size, int) and not isinstance(c.probe_batch_size, bool)
           and c.probe_batch_size >= 1, "probe_batch_size", c.probe_batch_size, "an integer >= 1")
    if c.grad_clip is not None:
        _check(_is_num(c.grad_clip) and c.grad_clip > 0, "grad_clip", c.grad_clip, "> 0 or null")
    if c.time_budget_s is not None:
        _check(_is_num(c.time_budget_s) and c.time_budget_s > 0, "time_budget_s",
               c.time_budget_s, "> 0 or null")
    _check(c.device in DEVICES, "device", c.device, f"one of {DEVICES}")
    for key in ("mlp_hidden", "projector") + (("ffn_hidden",) if c.ffn_hidden else ()):
        for w in getattr(c, key):
            _check(isinstance(w, int) and w >= 1, key, getattr(c, key), "a list of widths >= 1")
    _check(c.batch_sampler in BATCH_SAMPLERS, "batch_sampler", c.batch_sampler,
           f"one of {BATCH_SAMPLERS}")
    p = c.classes_per_batch
    if c.batch_sampler == "class":
        _check(isinstance(p, int) and not isinstance(p, bool) and p >= 1, "classes_per_batch", p,
               "an integer >= 1 with batch_sampler 'class' (the classes in each batch)")
        _check(c.batch_size % p == 0, "classes_per_batch", p,
               f"a divisor of batch_size ({c.batch_size}), so that each class gets batch_size / "
               "classes_per_batch samples")
        _check(c.pretrain_label_fraction != 0, "pretrain_label_fraction",
               c.pretrain_label_fraction,
               "> 0 with batch_sampler 'class' (it draws labelled samples)")
    else:
        _check(p is None, "classes_per_batch", p, "null unless batch_sampler is 'class'")
