"""The sweep grid: grid points, their grouping into trials, the sweep id and `--dry-run`'s text.

`expand(space)` is the full factorial product, except that grid points which differ only in
`label_fraction` and pretrain identically become ONE trial evaluated at all of those fractions:
a loss that sees no labels pretrains the same whatever the fraction, and a loss that does see
labels pretrains the same when `pretrain_label_fraction` caps its labels at the same fraction.
Seeds never merge. The sweep id is the space's name plus a hash of the trial list, so the same
YAML always maps to the same sweep (resume, dedup).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.config import ConfigError, TrialConfig, show_value
from bench.space import registries
from bench.space.sections import ALIASES, Space


def grid_points(space: Space) -> list[TrialConfig]:
    """The full factorial product, one TrialConfig per grid point (one label fraction each)."""
    keys = [k for k, _ in space.grid]
    points = []
    for combo in itertools.product(*(vs for _, vs in space.grid)):
        cell = {**space.base, **dict(zip(keys, combo))}
        dataset = cell.get("dataset", TrialConfig().dataset)
        cell = {**space.base, **space.per_dataset.get(dataset, {}), **dict(zip(keys, combo))}
        loss = cell.get("loss", TrialConfig().loss)
        lp = space.loss_params.get(loss, ())
        for pcombo in itertools.product(*(vs for _, vs in lp)):
            flat = {ALIASES.get(k, k): v for k, v in cell.items()}
            flat["loss_params"] = dict(zip((n for n, _ in lp), pcombo))
            if space.time_budget_s is not None:
                flat["time_budget_s"] = space.time_budget_s
            points.append(_build(space, flat, dataset))
    return points


def _build(space: Space, flat: dict[str, Any], dataset: str) -> TrialConfig:
    """TrialConfig.from_flat; a value it rejects is re-worded to name the file and the section
    of the key (the error carries the key, the value and the rule)."""
    try:
        return TrialConfig.from_flat(flat, source=space.source)
    except ConfigError as exc:
        if not exc.has_value:
            raise
        key = next((k for k, field in ALIASES.items() if field == exc.key), str(exc.key))
        raise ConfigError(
            f"{space.source}: key {space.where(key, dataset)!r} has value "
            f"{show_value(exc.value)}; it must be {exc.must}.",
            key=exc.key,
            value=exc.value,
            must=exc.must,
        ) from None


def expand(space: Space) -> list[TrialConfig]:
    """The sweep's trials: grid points grouped so that label fractions sharing one pretraining
    are evaluated by one trial (`label_fractions` sorted). Order follows the YAML."""
    groups: dict[tuple[str, float | None], list[TrialConfig]] = {}
    for cfg in grid_points(space):
        blank = cfg.replace(label_fractions=(1.0,))
        # What pretraining depends on besides the config: the fraction of labels the loss sees.
        seen = cfg.pretrain_fraction if registries.uses_labels(cfg.loss) else None
        groups.setdefault((blank.trial_id(), seen), []).append(cfg)
    trials = []
    for members in groups.values():
        fractions = tuple(sorted({f for c in members for f in c.label_fractions}))
        trials.append(members[0].replace(label_fractions=fractions))
    return trials


def sweep_id(space: Space, trials: Sequence[TrialConfig]) -> str:
    """`<name>-<8 hex>`: the hash covers the trial list, not the file's wording or resources."""
    blob = "\n".join(sorted(t.trial_id() for t in trials))
    return f"{space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Expansion:
    """What `bench sweep --dry-run` reports."""

    grid_points: int
    trials: int
    merged_label_free: int  # grid points saved because the loss sees no labels
    merged_capped: int  # grid points saved because pretrain_label_fraction caps the labels


def expansion_stats(space: Space, trials: Sequence[TrialConfig] | None = None) -> Expansion:
    points = len(grid_points(space))
    trials = expand(space) if trials is None else trials
    free = capped = 0
    for t in trials:
        extra = len(t.label_fractions) - 1
        if registries.uses_labels(t.loss):
            capped += extra
        else:
            free += extra
    return Expansion(points, len(trials), free, capped)


def describe(space: Space, trials: Sequence[TrialConfig] | None = None) -> str:
    """Human summary of a space: grid, per-loss grids, resources, and what grouping saved."""
    trials = expand(space) if trials is None else trials
    stats = expansion_stats(space, trials)
    lines = [f"search space {space.source}: sweep id {sweep_id(space, trials)}"]
    if space.description:
        lines.append(f"  {space.description.strip()}")
    if space.base:
        lines.append("base: " + ", ".join(f"{k}={show_value(v)}" for k, v in space.base.items()))
    lines.append("grid:")
    width = max((len(k) for k, _ in space.grid), default=0)
    for k, vs in space.grid:
        lines.append(f"  {k:<{width}}  {', '.join(show_value(v) for v in vs)}  ({len(vs)})")
    if not space.grid:
        lines.append("  (none: a single trial)")
    for loss, params in space.loss_params.items():
        shown = "; ".join(f"{p}: {', '.join(show_value(v) for v in vs)}" for p, vs in params)
        lines.append(f"loss_params {loss}: {shown}")
    for ds, settings in space.per_dataset.items():
        lines.append(
            f"per_dataset {ds}: " + ", ".join(f"{k}={show_value(v)}" for k, v in settings.items())
        )
    r = space.resources
    res = f"cpu {r.cpu:g}, gpu {r.gpu:g}" + "".join(
        f", gpu {s:g} from batch size {bs}" for bs, s in r.gpu_from_batch_size
    )
    budget = "none" if space.time_budget_s is None else f"{space.time_budget_s:g} s"
    lines.append(
        f"per trial: {res}; retries {space.retries}; time budget {budget}; "
        f"checkpoint every {space.checkpoint_every} epoch(s)"
        + (f"; at most {space.max_concurrent} at once" if space.max_concurrent else "")
    )
    epochs = sum(t.epochs for t in trials)
    lines.append(
        f"{stats.grid_points} grid points -> {stats.trials} trials "
        f"({_saved(stats)}); {epochs} trial-epochs in all"
    )
    return "\n".join(lines)


def _saved(s: Expansion) -> str:
    saved = s.grid_points - s.trials
    if saved == 0:
        return "no grid points share a pretraining"
    parts = []
    if s.merged_label_free:
        parts.append(
            f"{s.merged_label_free} by evaluating label fractions of label-free losses in one trial"
        )
    if s.merged_capped:
        parts.append(f"{s.merged_capped} where pretrain_label_fraction caps the labels a loss sees")
    return f"{saved} saved: " + "; ".join(parts)
