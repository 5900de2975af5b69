"""The numbers behind reports/FINDINGS.md, recomputed from the Parquet store of `make reproduce`.

    .venv/bin/python reports/findings_tables.py results/reproduce > reports/findings_tables.md

For each CLOA collapse space (its sweep id from the YAML, as `make reproduce` runs it) and each
(loss, lr) at label fraction 0.1: test top-1 of the paper's FFN probe and of kNN (mean over
seeds with a 95% t-interval; a diverged seed counts as chance), the backbone's normalised variance, RankMe and
dead-unit share (a diverged seed reports its last finite epoch), and the divergence rate; then
CLOA's effect, cloa+X minus X paired by seed at every lr; then how flat the training loss is over
the last third of training (does it plateau?). Pure pandas/numpy on the store: no torch, no Ray.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.stats import mean_ci
from bench.space import expand, load_space, sweep_id
from bench.store import read_results

SPACES = ("cloa_collapse_synthetic", "cloa_collapse_digits", "cloa_collapse_ablations",
          "cloa_collapse_temperature", "cloa_collapse_weight", "clop_collapse")
ROOT = Path(__file__).resolve().parents[1]
ACC = "m_ffn_top1"
FRACTION = 0.1


def space_id(path: Path) -> str:
    space = load_space(path)
    return sweep_id(space, expand(space))


def settings(df: pd.DataFrame) -> pd.Series:
    """The settings that vary within the sweep besides loss and lr (dataset, batch size, and the
    ablations' optimizer, schedule, projector), as text."""
    label = pd.Series("", index=df.index)
    for col, short in (("p_dataset", ""), ("p_batch_size", "batch "), ("p_optimizer", ""),
                       ("p_schedule", ""), ("p_projector", "proj")):
        if col in df and df[col].astype(str).nunique() > 1:
            label = label + " " + short + df[col].astype(str)
    return label


def params(df: pd.DataFrame) -> pd.Series:
    """The loss parameters when they vary within the sweep (temperature, reduction)."""
    p = df["p_loss_params"].fillna("{}").astype(str)
    return (" " + p).where(p.groupby(df["loss"]).transform("nunique") > 1, "")


def fmt(ci) -> str:
    if not np.isfinite(ci.mean):
        return "-"
    if not np.isfinite(ci.low):
        return f"{ci.mean:.3f}"
    return f"{ci.mean:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def cell_table(final: pd.DataFrame) -> str:
    rows = ["| loss | lr | n | diverged | FFN top-1 (test) | kNN top-1 (test) | nvar(h) | RankMe(h) "
            "| dead(h) |", "|---|---|---|---|---|---|---|---|---|"]
    for (name, setting, lr), g in final.groupby(["entry", "setting", "p_lr"], sort=True):
        acc = g["acc"].to_numpy(float)
        knn = g["knn"].to_numpy(float)
        rows.append(
            f"| {name}{setting} | {lr:g} | {len(g)} | {(g['status'] == 'diverged').mean():.0%} | "
            f"{fmt(mean_ci(acc))} | {fmt(mean_ci(knn))} | {g['m_h_nvar'].mean():.3f} | {g['m_h_rankme'].mean():.2f} | "
            f"{g['m_h_dead'].mean():.2f} |")
    return "\n".join(rows)


def addon_effect(final: pd.DataFrame) -> str:
    rows = ["| variant | lr | n pairs | variant - base, FFN top-1 (test) | variant - base, kNN "
            "top-1 (test) | variant - base, nvar(h) |", "|---|---|---|---|---|---|"]
    # A variant is paired with its base loss under the same ablation settings; when the base
    # runs at several loss parameters (temperatures), with the same parameters too.
    variants = final[final["addon"].astype(str).isin(["cloa", "clop"])]
    for (name, setting), _ in variants.groupby(["entry", "setting"], sort=True):
        base_loss = name.split(" ")[0].split("+", 1)[1]
        same = (final["setting"] == setting) & (final["loss"] == base_loss)
        base_entries = set(final.loc[same, "entry"])
        own = base_loss + name[len(name.split(" ")[0]):]
        base = own if own in base_entries else base_loss if base_loss in base_entries else None
        if base is None:
            continue
        for lr in sorted(final["p_lr"].unique()):
            a = final[(final["entry"] == name) & (final["setting"] == setting)
                      & (final["p_lr"] == lr)].set_index("seed")
            b = final[(final["entry"] == base) & (final["setting"] == setting)
                      & (final["p_lr"] == lr)].set_index("seed")
            seeds = sorted(set(a.index) & set(b.index))
            d_acc = (a.loc[seeds, "acc"] - b.loc[seeds, "acc"]).to_numpy(float)
            d_knn = (a.loc[seeds, "knn"] - b.loc[seeds, "knn"]).to_numpy(float)
            d_var = (a.loc[seeds, "m_h_nvar"] - b.loc[seeds, "m_h_nvar"]).to_numpy(float)
            rows.append(f"| {name}{setting} vs {base} | {lr:g} | {len(seeds)} | {fmt(mean_ci(d_acc))} | "
                        f"{fmt(mean_ci(d_knn))} | {fmt(mean_ci(d_var))} |")
    return "\n".join(rows)


def plateau(rows: pd.DataFrame) -> str:
    """Median relative change of the epoch's mean training loss over the last third of training."""
    done = rows[(rows["status"] != "diverged") & (rows["label_fraction"] == rows["label_fraction"].min())]
    last = int(done["epoch"].max())
    start = max(1, round(last * 2 / 3))
    a = done[done["epoch"] == start].set_index("trial_id")["m_loss"]
    b = done[done["epoch"] == last].set_index("trial_id")["m_loss"]
    both = a.index.intersection(b.index)
    rel = ((b[both] - a[both]).abs() / a[both].abs().clip(lower=1e-12))
    lr = done.drop_duplicates("trial_id").set_index("trial_id").loc[both, "p_lr"]
    out = ["| lr | trials | median abs rel. change of the loss, epoch "
           f"{start} -> {last} | 90th percentile |", "|---|---|---|---|"]
    for value, g in rel.groupby(lr):
        out.append(f"| {value:g} | {len(g)} | {g.median():.3f} | {g.quantile(0.9):.3f} |")
    return "\n".join(out)


def main(store: str, spaces: list[Path] | None = None) -> None:
    df = read_results(store)
    for path in spaces or [ROOT / "search_spaces" / f"{name}.yaml" for name in SPACES]:
        name, sid = path.stem, space_id(path)
        rows = df[df["sweep_id"] == sid].copy()
        print(f"## {name} (sweep {sid})\n")
        if rows.empty:
            print("No rows in the store for this sweep.\n")
            continue
        rows["setting"] = settings(rows)
        rows["entry"] = rows["loss"].astype(str) + params(rows)
        final = rows[rows["final"] & (rows["label_fraction"] == FRACTION)]
        # Chance per dataset (a sweep may run two); a diverged seed scores chance.
        chance = 1.0 / final.groupby("p_dataset")["m_num_classes"].transform("max")
        final = final.assign(acc=final[ACC].where(final["status"] != "diverged", chance),
                             knn=final["m_knn_top1"].where(final["status"] != "diverged", chance))
        shown = ", ".join(f"{d} {1 / k:.3f}" for d, k in
                          final.groupby("p_dataset")["m_num_classes"].max().items())
        trials = rows["trial_id"].nunique()
        print(f"{trials} trials, {int(final['status'].eq('diverged').sum())} of the label-fraction "
              f"{FRACTION:g} cells diverged; chance: {shown}.\n")
        print(f"### Cells at label fraction {FRACTION:g}\n\n{cell_table(final)}\n")
        print(f"### The add-on's effect (CLOA or CLOP), paired by seed\n\n{addon_effect(final)}\n")
        print(f"### Does the training loss plateau?\n\n{plateau(rows)}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/reproduce")
