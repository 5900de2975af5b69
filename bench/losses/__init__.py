"""Contrastive losses: a registry of ``nn.Module`` losses with one call signature.

Every loss is ``forward(z1, z2, labels=None) -> scalar`` with ``z1, z2`` the two views'
projections ``(B, d)`` and ``labels`` ``(B,)`` int64 (-1 = unlabelled). Add-on terms compose
with any base loss by name (``"cloa+infonce"``). Importing this package imports every module in
it, and each loss module registers its loss with ``@register_loss``: adding a built-in loss is
one new file here (plus its test), nothing else. ``load_plugin`` and
``load_entry_point_plugins`` register a user's own.

Example:
    >>> import torch
    >>> from bench.losses import build_loss, list_losses
    >>> "infonce" in list_losses()
    True
    >>> loss = build_loss("cloa+infonce", num_classes=4, dim=8, seed=0, temperature=0.2)
    >>> z1, z2, y = torch.randn(6, 8), torch.randn(6, 8), torch.tensor([0, 1, -1, 3, -1, 2])
    >>> loss(z1, z2, y).shape
    torch.Size([])
"""

import importlib
import pkgutil

from bench.losses._registry import (
    DuplicateLossError,
    LossInfo,
    LossLookupError,
    build_loss,
    list_addons,
    list_losses,
    loss_info,
    register_loss,
)
from bench.losses.base import LossParamError, check_range, check_views, checked_forward
from bench.losses.catalog import format_loss_table
from bench.losses.composite import AddonTerm, CompositeLoss, orthonormal_targets
from bench.losses.plugins import PluginError, load_entry_point_plugins, load_plugin

for _module in pkgutil.iter_modules(__path__):  # the built-in losses register themselves
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AddonTerm",
    "CompositeLoss",
    "DuplicateLossError",
    "LossInfo",
    "LossLookupError",
    "LossParamError",
    "PluginError",
    "build_loss",
    "check_range",
    "check_views",
    "checked_forward",
    "format_loss_table",
    "list_addons",
    "list_losses",
    "load_entry_point_plugins",
    "load_plugin",
    "loss_info",
    "orthonormal_targets",
    "register_loss",
]
