"""Trial configuration: one frozen dataclass, its flat form, and its validation.

A `TrialConfig` is everything `run_trial` needs and nothing about where it runs. Its flat form
(`to_flat`) is what Ray sees and what names the Parquet `p_*` columns, so every field here is a
column in the results store (dict-valued fields are stored as canonical JSON).

Sweep expansion (YAML -> list of TrialConfig) lives in `bench.space`; this module stays free of
file handling so that `run_trial` and the store can share it.

Every rule about a config key or value lives here, once: `TrialConfig` validates the values (a
rejected value is a `ConfigError` carrying its `key`, `value` and what it `must` be, so that a
caller that knows where the value came from, a YAML file and section, can say so without
parsing the message), `did_you_mean` is the one suggestion for a misspelt name, and
`with_overrides` the one way a dotted key (`loss_params.temperature=0.2`) sets a nested value.
`bench run`, `bench sweep` and `bench tune` all go through them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

AUGMENT_PRESETS = ("auto", "simclr", "cloa", "none")
OPTIMIZERS = ("sgd", "lars", "adamw")
PROBE_FEATURES = ("standardized", "raw")
PROBE_OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
LR_SCALINGS = ("absolute", "per256")
DEVICES = ("auto", "cpu", "cuda")
BATCH_SAMPLERS = ("random", "class")


# Config keys holding a mapping whose entries a dotted key sets: `loss_params.temperature`.
NESTED_KEYS = ("loss_params", "dataset_params")
_UNSET: Any = object()


class ConfigError(ValueError):
    """Bad user input in a config: the message is one sentence naming the key and the value.

    Raised for a value `TrialConfig` rejects, it also carries the config `key`, the `value` and
    what the value `must` be (None when the error is not about one value).
    """

    def __init__(
        self, message: str, *, key: str | None = None, value: Any = _UNSET, must: str | None = None
    ) -> None:
        super().__init__(message)
        self.key, self.value, self.must = key, value, must

    @property
    def has_value(self) -> bool:
        return self.key is not None and self.value is not _UNSET and self.must is not None


def is_number(x: Any) -> TypeGuard[int | float]:
    """A finite real number (not a bool): what every numeric config value must be."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def show_value(v: Any) -> str:
    """A config value as the error messages quote it: 1e-3 not 0.001, strings quoted."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {show_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def did_you_mean(
    name: Any, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6, prefix: str = ""
) -> str:
    """`did you mean 'x'?` (or `'x' or 'y'`, up to `n`) for a misspelt `name`; "" when no name
    in `known` is close. `prefix` is put before each suggestion (`loss_params.`)."""
    close = difflib.get_close_matches(str(name), list(known), n=n, cutoff=cutoff)
    return f"did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""


def with_overrides(flat: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`flat` with each override set; a dotted key (`loss_params.temperature`,
    `dataset_params.k`) sets one entry of that nested mapping, other keys replace the value."""
    out = dict(flat)
    for key, value in overrides.items():
        head, dot, tail = str(key).partition(".")
        if not dot:
            out[key] = value
        elif head in NESTED_KEYS and tail:
            out[head] = {**dict(out.get(head) or {}), tail: value}
        else:
            raise ConfigError(
                f"key {key!r} has a dot, but only "
                f"{' and '.join(k + '.NAME' for k in NESTED_KEYS)} take one.",
                key=str(key),
            )
    return out


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
        names = cls.keys()
        unknown = sorted(set(flat) - set(names))
        if unknown:
            hint = did_you_mean(unknown[0], names) or f"known keys are {', '.join(sorted(names))}."
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; {hint}", key=unknown[0])
        kwargs = {k: _coerce(k, v) for k, v in flat.items()}
        return cls(**kwargs)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every config key, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def trial_id(self) -> str:
        """Stable id from the content: the same config gets the same id on every machine."""
        blob = json.dumps(self.to_flat(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


_TUPLE_FIELDS = {"label_fractions", "mlp_hidden", "projector", "ffn_hidden"}


def _coerce(key: str, value: Any) -> Any:
    if key in _TUPLE_FIELDS and value is not None:
        if isinstance(value, (int, float)):
            value = [value]
        _check(isinstance(value, (list, tuple)), key, value, "a list")
        return tuple(value)
    if key in NESTED_KEYS:
        if value is None:
            return {}
        _check(isinstance(value, Mapping), key, value, "a mapping")
        return dict(value)
    return value


def _check(ok: bool, key: str, value: Any, must: str) -> None:
    if not ok:
        raise ConfigError(
            f"config key {key!r} has value {show_value(value)}; it must be {must}.",
            key=key,
            value=value,
            must=must,
        )


def _validate(c: TrialConfig) -> None:
    _check(isinstance(c.loss, str) and c.loss != "", "loss", c.loss, "a loss name")
    _check(is_int(c.seed), "seed", c.seed, "an integer")
    _check(is_int(c.split_seed), "split_seed", c.split_seed, "an integer")
    _check(c.augment in AUGMENT_PRESETS, "augment", c.augment, f"one of {AUGMENT_PRESETS}")
    _check(len(c.label_fractions) > 0, "label_fraction", c.label_fractions, "non-empty")
    for f in c.label_fractions:
        _check(is_number(f) and 0 < f <= 1, "label_fraction", f, "in (0, 1]")
    if c.pretrain_label_fraction is not None:
        p = c.pretrain_label_fraction
        _check(is_number(p) and 0 <= p <= 1, "pretrain_label_fraction", p, "in [0, 1] or null")
    _check(c.optimizer in OPTIMIZERS, "optimizer", c.optimizer, f"one of {OPTIMIZERS}")
    _check(c.schedule in SCHEDULES, "schedule", c.schedule, f"one of {SCHEDULES}")
    _check(c.lr_scaling in LR_SCALINGS, "lr_scaling", c.lr_scaling, f"one of {LR_SCALINGS}")
    _check(is_number(c.lr) and c.lr > 0, "lr", c.lr, "a positive number")
    _check(is_number(c.momentum) and 0 <= c.momentum < 1, "momentum", c.momentum, "in [0, 1)")
    _check(
        is_number(c.weight_decay) and c.weight_decay >= 0, "weight_decay", c.weight_decay, ">= 0"
    )
    for key in ("epochs", "batch_size", "eval_every", "knn_k", "geometry_samples"):
        v = getattr(c, key)
        _check(is_int(v) and v >= 1, key, v, "an integer >= 1")
    _check(c.batch_size >= 2, "batch_size", c.batch_size, "at least 2 (two views need a pair)")
    for key in ("warmup_epochs", "probe_epochs"):
        v = getattr(c, key)
        _check(is_int(v) and v >= 0, key, v, "an integer >= 0")
    _check(
        is_number(c.knn_temperature) and c.knn_temperature > 0,
        "knn_temperature",
        c.knn_temperature,
        "a positive number",
    )
    _check(
        is_number(c.val_fraction) and 0 <= c.val_fraction < 0.5,
        "val_fraction",
        c.val_fraction,
        "in [0, 0.5)",
    )
    _check(
        c.probe_features in PROBE_FEATURES,
        "probe_features",
        c.probe_features,
        f"one of {PROBE_FEATURES}",
    )
    _check(
        c.probe_optimizer in PROBE_OPTIMIZERS,
        "probe_optimizer",
        c.probe_optimizer,
        f"one of {PROBE_OPTIMIZERS}",
    )
    if c.probe_lr is not None:
        _check(
            is_number(c.probe_lr) and c.probe_lr > 0,
            "probe_lr",
            c.probe_lr,
            "a positive number or null",
        )
    _check(
        is_int(c.probe_batch_size) and c.probe_batch_size >= 1,
        "probe_batch_size",
        c.probe_batch_size,
        "an integer >= 1",
    )
    if c.grad_clip is not None:
        _check(is_number(c.grad_clip) and c.grad_clip > 0, "grad_clip", c.grad_clip, "> 0 or null")
    if c.time_budget_s is not None:
        _check(
            is_number(c.time_budget_s) and c.time_budget_s > 0,
            "time_budget_s",
            c.time_budget_s,
            "> 0 or null",
        )
    _check(c.device in DEVICES, "device", c.device, f"one of {DEVICES}")
    for key in ("mlp_hidden", "projector") + (("ffn_hidden",) if c.ffn_hidden else ()):
        for w in getattr(c, key):
            _check(is_int(w) and w >= 1, key, getattr(c, key), "a list of widths >= 1")
    _check(
        c.batch_sampler in BATCH_SAMPLERS,
        "batch_sampler",
        c.batch_sampler,
        f"one of {BATCH_SAMPLERS}",
    )
    classes = c.classes_per_batch
    if c.batch_sampler == "class":
        _check(
            is_int(classes) and classes >= 1,
            "classes_per_batch",
            classes,
            "an integer >= 1 with batch_sampler 'class' (the classes in each batch)",
        )
        assert classes is not None  # checked just above
        _check(
            c.batch_size % classes == 0,
            "classes_per_batch",
            classes,
            f"a divisor of batch_size ({c.batch_size}), so that each class gets batch_size / "
            "classes_per_batch samples",
        )
        _check(
            c.pretrain_label_fraction != 0,
            "pretrain_label_fraction",
            c.pretrain_label_fraction,
            "> 0 with batch_sampler 'class' (it draws labelled samples)",
        )
    else:
        _check(
            classes is None, "classes_per_batch", classes, "null unless batch_sampler is 'class'"
        )
