"""Plugins: loading a user's loss from a file (--plugin) or the bench.losses entry points."""

from __future__ import annotations

import importlib.metadata
import math
import sys
from pathlib import Path

import pytest
import torch

from bench.losses import (
    PluginError,
    build_loss,
    format_loss_table,
    list_losses,
    load_entry_point_plugins,
    load_plugin,
    loss_info,
)
from bench.losses.infonce import InfoNCELoss

# The example plugin of the README, verbatim.
GOOD = '''\
"""Alignment + uniformity on the hypersphere (Wang and Isola 2020) as a bench plugin."""
import torch
import torch.nn.functional as F
from torch import nn

from bench.losses import check_range, checked_forward, register_loss


@register_loss("align_uniform", uses_labels=False,
               paper="Wang and Isola 2020, arXiv:2005.10242",
               reference="SsnL/align_uniform", terms=("align", "uniform"))
class AlignUniformLoss(nn.Module):
    """Alignment of the two views plus uniformity of all 2B embeddings on the sphere."""

    def __init__(self, t: float = 2.0, weight: float = 1.0):
        super().__init__()
        self.t = check_range("align_uniform", "t", t, gt=0)
        self.weight = check_range("align_uniform", "weight", weight, ge=0)
        self.last_terms = {}

    @checked_forward  # validates z1, z2, labels; bf16 -> float32; autocast off inside
    def forward(self, z1, z2, labels=None):
        u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        align = (u1 - u2).pow(2).sum(1).mean()
        uniform = torch.pdist(torch.cat([u1, u2])).pow(2).mul(-self.t).exp().mean().log()
        self.last_terms = {"align": align.detach(), "uniform": uniform.detach()}
        return align + self.weight * uniform
'''

CLASH = """\
from torch import nn
from bench.losses import register_loss

@register_loss("fine_before_clash")
class Fine(nn.Module):
    def forward(self, z1, z2, labels=None):
        return (z1 - z2).pow(2).mean()

@register_loss("infonce")
class Mine(nn.Module):
    def forward(self, z1, z2, labels=None):
        return (z1 - z2).pow(2).mean()
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_plugin_registers_and_builds(tmp_path: Path, clean_registry: None) -> None:
    path = write(tmp_path, "align_uniform.py", GOOD)
    assert load_plugin(path) == ["align_uniform"]
    assert "align_uniform" in list_losses()
    info = loss_info("align_uniform")
    assert info.params == {"t": 2.0, "weight": 1.0} and info.source == str(path.resolve())
    loss = build_loss("align_uniform", t=3.0)
    z = torch.randn(8, 16, requires_grad=True)
    value = loss(z[:4], z[4:])
    value.backward()
    assert torch.isfinite(value) and set(loss.last_terms) == {"align", "uniform"}
    # Composes with the add-ons like any built-in loss.
    composite = build_loss("clop+align_uniform", num_classes=3, dim=16, weight=0.5)
    assert torch.isfinite(composite(z[:4], z[4:], torch.tensor([0, 1, -1, 2])))
    assert "align_uniform" in format_loss_table() and str(path.resolve()) in format_loss_table()
    # Loading the same file again (CLI, then a worker) is a no-op.
    assert load_plugin(str(path)) == ["align_uniform"]


def test_collapse_value_of_the_example(tmp_path: Path, clean_registry: None) -> None:
    load_plugin(write(tmp_path, "au.py", GOOD))
    z = torch.ones(4, 8, dtype=torch.float64)
    assert build_loss("align_uniform")(z, z).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(build_loss("align_uniform")(z, -z).item())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"nope.py does not exist"):
        load_plugin(tmp_path / "nope.py")


def test_not_a_python_file(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"must be a Python file ending in \.py"):
        load_plugin(write(tmp_path, "loss.txt", GOOD))


def test_syntax_error_names_file_and_line(tmp_path: Path, clean_registry: None) -> None:
    path = write(tmp_path, "broken.py", "import torch\n\ndef f(:\n    pass\n")
    with pytest.raises(
        PluginError, match=r"broken\.py has a syntax error in .*broken\.py at line 3"
    ):
        load_plugin(path)


def test_file_without_a_loss(tmp_path: Path, clean_registry: None) -> None:
    path = write(tmp_path, "empty.py", "X = 1\n")
    with pytest.raises(PluginError, match=r"registers no loss; decorate an nn.Module"):
        load_plugin(path)


def test_import_error_inside_the_plugin(tmp_path: Path, clean_registry: None) -> None:
    path = write(tmp_path, "raises.py", "raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=r"raises.py failed to import: RuntimeError: boom"):
        load_plugin(path)


def test_clash_with_built_in_is_an_error_and_rolls_back(
    tmp_path: Path, clean_registry: None
) -> None:
    path = write(tmp_path, "clash.py", CLASH)
    with pytest.raises(PluginError, match="'infonce', which clashes with the built-in loss"):
        load_plugin(path)
    assert loss_info("infonce").cls is InfoNCELoss
    assert "fine_before_clash" not in list_losses()


def test_clash_between_two_plugins(tmp_path: Path, clean_registry: None) -> None:
    load_plugin(write(tmp_path, "first.py", GOOD))
    (tmp_path / "sub").mkdir()
    with pytest.raises(PluginError, match=r"clashes with the loss from .*first.py"):
        load_plugin(write(tmp_path / "sub", "second.py", GOOD))


def _entry_points(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    eps = [
        importlib.metadata.EntryPoint(name=f"ep{i}", value=v, group="bench.losses")
        for i, v in enumerate(values)
    ]

    def fake(**kwargs: str) -> list[importlib.metadata.EntryPoint]:
        assert kwargs == {"group": "bench.losses"}
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


def test_entry_points_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    write(tmp_path, "bench_ep_plugin_mod.py", GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_points(monkeypatch, "bench_ep_plugin_mod:AlignUniformLoss")
    assert load_entry_point_plugins() == ["align_uniform"]
    assert load_entry_point_plugins() == ["align_uniform"]  # idempotent
    assert "align_uniform" in list_losses()
    sys.modules.pop("bench_ep_plugin_mod", None)


def test_entry_point_errors(monkeypatch: pytest.MonkeyPatch, clean_registry: None) -> None:
    _entry_points(monkeypatch, "no_such_module_for_bench_tests")
    with pytest.raises(
        PluginError,
        match=r"Entry point 'ep0 = no_such_module_for_bench_tests'.*"
        r"failed to import: ModuleNotFoundError",
    ):
        load_entry_point_plugins()


def test_no_entry_points_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_points(monkeypatch)
    assert load_entry_point_plugins() == []
