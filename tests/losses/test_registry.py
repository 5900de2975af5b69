"""Registry: names, metadata, parameter validation and error messages."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from bench.losses import (
    LossInfo,
    build_loss,
    format_loss_table,
    list_addons,
    list_losses,
    loss_info,
    register_loss,
)
from bench.losses.infonce import InfoNCELoss

BUILT_IN = ["barlow_twins", "ce", "dcl", "dclw", "infonce", "simo", "simo_pairs", "supcon", "vicreg"]


def test_list_losses_is_sorted_and_has_no_composites() -> None:
    assert list_losses() == sorted(list_losses())
    assert set(BUILT_IN) <= set(list_losses())
    assert not any("+" in n for n in list_losses()) and "cloa" not in list_losses()
    assert list_addons() == ["cloa", "clop"]
    assert list_losses("dcl*") == ["dcl", "dclw"]


def test_loss_info_reads_the_signature() -> None:
    info = loss_info("infonce")
    assert isinstance(info, LossInfo) and info.cls is InfoNCELoss
    assert info.params == {"temperature": 0.5} and info.uses_labels is False
    assert info.paper.startswith("SimCLR") and "lightly" in info.reference
    assert info.terms == () and info.source == "built-in"
    assert loss_info("vicreg").terms == ("invariance", "variance", "covariance")
    assert loss_info("supcon").params == {"temperature": 0.1, "base_temperature": None}
    assert loss_info("supcon").uses_labels and loss_info("simo").uses_labels
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_cites_paper_and_reference(name: str) -> None:
    info = loss_info(name)
    assert "arXiv" in info.paper and info.reference
    doc = info.cls.__doc__ or ""
    assert "[0]" in doc and "[1]" in doc and "Args:" in doc


def test_composite_info() -> None:
    info = loss_info("cloa+infonce")
    assert info.name == "cloa+infonce" and info.uses_labels and info.kind == "composite"
    assert info.params == {"temperature": 0.5, "addon_weight": 1.0, "reduction": "batch"}
    assert info.terms == ("base", "addon")
    assert "SimCLR" in info.paper and "CLOA" in info.paper


@pytest.mark.parametrize(
    ("name", "close"),
    [
        ("infonc", "infonce"),
        ("barlow", "barlow_twins"),
        ("vicrag", "vicreg"),
        ("cloa+infonse", "infonce"),
    ],
)
def test_unknown_name_lists_close_matches(name: str, close: str) -> None:
    with pytest.raises(KeyError, match=f"Did you mean.*{close}") as info:
        build_loss(name, num_classes=2, dim=4)
    assert str(info.value).startswith("Unknown")


def test_reversed_composite_and_lone_addon_say_how_to_compose() -> None:
    with pytest.raises(KeyError, match="use 'cloa\\+infonce'"):
        loss_info("infonce+cloa")
    with pytest.raises(KeyError, match="add-on term"):
        build_loss("clop", num_classes=2, dim=4)
    with pytest.raises(KeyError, match="Unknown add-on term 'cloo'"):
        loss_info("cloo+infonce")


def test_unknown_parameter_names_the_loss_and_allowed_parameters() -> None:
    with pytest.raises(
        KeyError,
        match=r"temprature for loss 'infonce'.*Did you mean 'temperature'"
        r".*Allowed parameters \(defaults\): temperature=0.5",
    ):
        build_loss("infonce", temprature=0.1)
    with pytest.raises(KeyError, match=r"lambda_param=25.0.*addon_weight=1.0"):
        build_loss("clop+vicreg", num_classes=2, dim=4, lambd=1.0)


def test_none_parameters_fall_back_to_defaults() -> None:
    loss = build_loss("infonce", temperature=None)
    assert loss.temperature == 0.5


OUT_OF_RANGE = [
    ("infonce", "temperature", 0.0, "> 0"),
    ("infonce", "temperature", -1.0, "> 0"),
    ("infonce", "temperature", float("nan"), "> 0"),
    ("infonce", "temperature", "0.5", "> 0"),
    ("dcl", "temperature", 0.0, "> 0"),
    ("dclw", "sigma", 0.0, "> 0"),
    ("barlow_twins", "lambda_param", -1e-3, ">= 0"),
    ("barlow_twins", "scale", 0.0, "> 0"),
    ("vicreg", "mu_param", -1.0, ">= 0"),
    ("vicreg", "eps", 0.0, "> 0"),
    ("supcon", "temperature", -0.1, "> 0"),
    ("supcon", "base_temperature", 0.0, "> 0"),
    ("simo", "eps", 0.0, "> 0"),
    ("simo", "olean", 0.5, ">= 0 and < 0.5"),
    ("simo", "olean", -0.1, ">= 0 and < 0.5"),
    ("simo_pairs", "eps", 0.0, "> 0"),
    ("simo_pairs", "olean", 0.5, ">= 0 and < 0.5"),
    ("cloa+infonce", "reduction", "mean", "one of 'batch', 'labelled' or 'sum'"),
    ("cloa+infonce", "addon_weight", -1.0, ">= 0"),
]


@pytest.mark.parametrize(("name", "param", "value", "allowed"), OUT_OF_RANGE)
def test_out_of_range_parameters(name: str, param: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError, match=f"{param} must be {allowed}.*got"):
        build_loss(name, num_classes=2, dim=4, **{param: value})


def test_duplicate_registration_is_an_error(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="'infonce' is already registered"):
        register_loss("infonce")(InfoNCELoss)

    @register_loss("scratch_loss")
    class Scratch(nn.Module):
        def forward(self, z1, z2, labels=None):
            return (z1 - z2).pow(2).mean()

    with pytest.raises(ValueError, match="already registered"):
        register_loss("scratch_loss")(Scratch)
    assert "scratch_loss" in list_losses()


@pytest.mark.parametrize("name", ["My-Loss", "a+b", "", "1loss", "with space"])
def test_bad_names_are_errors(name: str) -> None:
    with pytest.raises(ValueError, match="loss name must be"):
        register_loss(name)


def test_registration_needs_module_and_defaults(clean_registry: None) -> None:
    with pytest.raises(ValueError, match=r"nn.Module subclass"):
        register_loss("not_a_module")(object)  # type: ignore[type-var]

    class NoDefault(nn.Module):
        def __init__(self, margin: float) -> None:
            super().__init__()

    with pytest.raises(ValueError, match="'margin' has none"):
        register_loss("no_default")(NoDefault)


def test_build_passes_context_to_constructors_that_accept_it(clean_registry: None) -> None:
    @register_loss("needs_classes", uses_labels=True)
    class NeedsClasses(nn.Module):
        def __init__(self, num_classes: int = 0, dim: int = 0, margin: float = 1.0) -> None:
            super().__init__()
            self.num_classes, self.dim, self.margin = num_classes, dim, margin

    assert loss_info("needs_classes").params == {"margin": 1.0}
    loss = build_loss("needs_classes", num_classes=7, dim=32, margin=2.0)
    assert (loss.num_classes, loss.dim, loss.margin) == (7, 32, 2.0)


def test_format_loss_table() -> None:
    text = format_loss_table()
    for name in [*BUILT_IN, "cloa", "clop"]:
        assert f"\n{name}  -  " in text
    assert "temperature=0.5" in text and "lambda_param=0.005" in text
    assert "ADDON+BASE" in text and "addon_weight=1.0" in text
    assert "terms:   invariance, variance, covariance" in text
    one = format_loss_table(["clop+supcon"])
    assert one.count("params:") == 1 and "base_temperature=None, addon_weight=1.0" in one
    with pytest.raises(KeyError, match="Did you mean"):
        format_loss_table(["supconn"])


def test_built_loss_is_a_module_with_empty_terms() -> None:
    loss = build_loss("dcl", temperature=0.2)
    assert isinstance(loss, nn.Module) and loss.last_terms == {}
    assert torch.isfinite(loss(torch.randn(4, 3), torch.randn(4, 3)))
