"""Checks shared by every loss: input validation, precision policy and parameter ranges.

Every built-in loss decorates its ``forward`` with :func:`checked_forward`, so the error
sentences for bad inputs live here once. Plugin losses may use it too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from bench.config import ConfigError

_M = TypeVar("_M", bound=nn.Module)
Forward = Callable[[_M, Tensor, Tensor, "Tensor | None"], Tensor]


def check_views(z1: Any, z2: Any, labels: Any = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate ``z1, z2`` of shape ``(B, d)`` and ``labels`` of shape ``(B,)``; upcast.

    Half-precision views (bfloat16, float16) come back as float32 so that the loss internals
    run in float32 under autocast; float32 and float64 are kept. Labels come back as int64 on
    the views' device.

    Raises:
        ValueError: one sentence naming the bad argument and what is allowed.
    """
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor of shape (B, d), got {type(z).__name__}."
            )
        if not z.is_floating_point():
            raise ValueError(
                f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), "
                f"got {z.dtype}."
            )
        if z.dim() != 2:
            raise ValueError(f"{name} must be 2-D with shape (B, d), got shape {tuple(z.shape)}.")
    if z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must have the same shape (B, d), got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    if z1.shape[0] < 2 or z1.shape[1] < 1:
        raise ValueError(
            f"z1 and z2 need B >= 2 rows and d >= 1 columns, got shape {tuple(z1.shape)}."
        )
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2 must be on the same device, got {z1.device} and {z2.device}.")
    dtype = torch.promote_types(z1.dtype, z2.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    z1, z2 = z1.to(dtype), z2.to(dtype)
    if labels is not None:
        if not isinstance(labels, Tensor):
            raise ValueError(
                f"labels must be None or an int64 tensor of shape (B,), got {type(labels).__name__}."
            )
        if labels.shape != (z1.shape[0],):
            raise ValueError(
                f"labels must have shape (B,) = ({z1.shape[0]},) with -1 for unlabelled samples, "
                f"got {tuple(labels.shape)}."
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be an integer tensor (int64, -1 = unlabelled), got {labels.dtype}."
            )
        labels = labels.to(device=z1.device, dtype=torch.long)
    return z1, z2, labels


def checked_forward(fn: Forward[_M]) -> Forward[_M]:
    """Decorate ``forward(self, z1, z2, labels=None)``: validate, upcast, disable autocast.

    Under ``torch.autocast(..., dtype=torch.bfloat16)`` the wrapped body runs with autocast off on
    float32 copies of the views, so matmuls and exponentials of the loss are not done in bf16.
    """

    @functools.wraps(fn)
    def forward(self: _M, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        z1, z2, labels = check_views(z1, z2, labels)
        if not torch.is_autocast_enabled(z1.device.type):
            return fn(self, z1, z2, labels)
        with torch.autocast(z1.device.type, enabled=False):
            return fn(self, z1, z2, labels)

    return forward


class LossParamError(ConfigError):
    """A loss parameter its loss does not accept; keeps the `loss`, the `param`, its `value` and
    what it `must` be, so a caller that knows where the value came from can say so. A config
    error: no retry can fix it."""

    def __init__(self, loss: str, param: str, value: Any, must: str) -> None:
        super().__init__(f"{loss}: {param} must be {must}, got {value!r}.")
        self.loss, self.param, self.value, self.must = loss, param, value, must

    def __reduce__(self) -> tuple[type[LossParamError], tuple[str, str, Any, str | None]]:
        return type(self), (self.loss, self.param, self.value, self.must)  # picklable (Ray)


def check_range(
    loss: str,
    name: str,
    value: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> float:
    """Return ``float(value)`` if it is a finite real number in the given range.

    Raises:
        LossParamError: a ValueError, e.g. ``"infonce: temperature must be > 0, got -1."``.
    """
    bounds = [
        f"{op} {b:g}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None
    ]
    allowed = " and ".join(bounds) or "a finite number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = not (
            (gt is not None and not value > gt)
            or (ge is not None and not value >= ge)
            or (lt is not None and not value < lt)
            or (le is not None and not value <= le)
        )
    if not ok:
        raise LossParamError(loss, name, value, allowed)
    return float(value)
