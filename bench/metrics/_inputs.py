"""The input checks the kNN and probe metrics share: features and labels of a fitted split and a
scored split (every message names the function and its arguments as the caller calls them)."""

from __future__ import annotations

from torch import Tensor


def check_splits(
    fn: str, names: tuple[str, str, str, str], x: Tensor, y: Tensor, qx: Tensor, qy: Tensor,
    num_classes: int,
) -> None:  # fmt: skip
    """Raise ValueError unless `x`, `qx` are 2-D with one feature size, `y`, `qy` hold one label
    per row, and no label reaches `num_classes`. `names`: (x, qx, y, qy) as `fn` calls them."""
    nx, nqx, ny, nqy = names
    if x.ndim != 2 or qx.ndim != 2 or x.shape[1] != qx.shape[1]:
        raise ValueError(
            f"{fn} needs 2-D {nx} and {nqx} with the same feature size, got {nx} "
            f"{tuple(x.shape)} and {nqx} {tuple(qx.shape)}."
        )
    if y.shape != (x.shape[0],) or qy.shape != (qx.shape[0],):
        raise ValueError(
            f"{fn} needs one label per row, got {ny} {tuple(y.shape)} for {nx} "
            f"{tuple(x.shape)} and {nqy} {tuple(qy.shape)} for {nqx} {tuple(qx.shape)}."
        )
    check_labels(fn, ((ny, y), (nqy, qy)), num_classes)


def check_labels(fn: str, labels: tuple[tuple[str, Tensor], ...], num_classes: int) -> None:
    for name, lab in labels:
        if lab.numel() and int(lab.max()) >= num_classes:
            raise ValueError(
                f"{fn}: {name} contains {int(lab.max())}, which is not below "
                f"num_classes={num_classes}."
            )


def labelled_rows(fn: str, x: Tensor, y: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """The rows of `x` (detached) and `y` (int64, on x's device) whose label is >= 0; raise
    ValueError naming `what` when there is none."""
    y = y.to(x.device).long()
    keep = y >= 0
    x, y = x.detach()[keep], y[keep]
    if x.shape[0] == 0:
        raise ValueError(f"{fn} got {what} (every label is < 0).")
    return x, y
