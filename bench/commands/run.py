"""`bench run`: one trial without Ray, from flags or a YAML plus `key=value` overrides."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.commands import UsageError
from bench.commands.common import add_plugin_argument, load_plugins

HELP = "run one trial without Ray, from flags or a YAML plus key=value overrides"

# Flags that are shorthands for config keys; anything else goes as key=value.
_FLAG_KEYS = (
    "loss",
    "dataset",
    "backbone",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "seed",
    "data_root",
    "device",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "items",
        nargs="*",
        metavar="[CONFIG.yaml] [KEY=VALUE ...]",
        help="an optional YAML (a flat trial config, or a sweep space whose `base` is "
        "used) followed by overrides such as lr=0.1 loss_params.temperature=0.2",
    )
    p.add_argument("--loss")
    p.add_argument("--dataset")
    p.add_argument("--backbone")
    p.add_argument("--optimizer")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--label-fraction",
        dest="label_fraction",
        type=float,
        action="append",
        help="evaluate at this label fraction (repeatable)",
    )
    p.add_argument(
        "--data-root", dest="data_root", help="dataset folder (default $BENCH_DATA or ./data)"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR if it is missing")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", type=Path, metavar="FILE", help="write every record to FILE as JSON")
    add_plugin_argument(p)


def parse_value(text: str) -> Any:
    """YAML scalars: 0.1 -> float, 3 -> int, true -> bool, [0.1, 0.5] -> list, null -> None."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` -> (config key, value); `label_fraction=0.1` sets `label_fractions`."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UsageError(f"override {item!r} is not of the form key=value (for example lr=0.1).")
    value = parse_value(raw)
    if key == "label_fraction":
        return "label_fractions", value if isinstance(value, list) else [value]
    return key, value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {str(path)!r} does not exist.") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc}).".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of config keys, got {type(data).__name__}.")
    if "base" in data:  # a sweep space: run its base settings (grid values come from overrides)
        return dict(data["base"] or {})
    return data


def build_config(args: argparse.Namespace) -> Any:
    from bench.config import ConfigError, TrialConfig, with_overrides

    items = list(args.items)
    flat: dict[str, Any] = {}
    source = "command line"
    if items and "=" not in items[0]:
        source = items[0]
        flat.update(read_yaml(Path(items.pop(0))))
    for key in _FLAG_KEYS:
        if getattr(args, key, None) is not None:
            flat[key] = getattr(args, key)
    if args.label_fraction:
        flat["label_fractions"] = args.label_fraction
    if args.download:
        flat["download"] = True
    flat = with_overrides(flat, dict(parse_override(item) for item in items))
    if flat.get("data_root"):
        flat["data_root"] = str(Path(flat["data_root"]).absolute())
    try:
        return TrialConfig.from_flat(flat, source=source)
    except (ConfigError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _fmt(record: dict[str, Any]) -> str:
    parts = [
        f"epoch {record['epoch']:>3}",
        f"lf {record['label_fraction']:.2f}",
        f"{record['status']:<8}",
        f"loss {record['m_loss']:.4f}",
    ]
    for key, label in (
        ("m_knn_top1", "knn@1"),
        ("m_linear_top1", "lin@1"),
        ("m_ffn_top1", "ffn@1"),
        ("m_h_rankme", "rankme"),
        ("m_h_total_var", "var"),
    ):
        value = record.get(key, math.nan)
        if value == value:  # not NaN
            parts.append(f"{label} {value:.4g}")
    parts.append(f"{record['m_images_per_s']:.0f} img/s")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    load_plugins(args.plugin)
    cfg = build_config(args)
    from bench.train import prepare_trial

    try:
        trial = prepare_trial(cfg)
    except (ValueError, KeyError) as exc:
        raise UsageError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    print(
        f"trial {cfg.trial_id()}: {cfg.loss} on {cfg.dataset}, lr {cfg.effective_lr:g}, "
        f"batch {cfg.batch_size}, {cfg.epochs} epochs, device {trial.device}",
        flush=True,
    )
    summary = trial.run(on_epoch=lambda r: print(_fmt(r), flush=True))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        payload = {
            "config": cfg.to_flat(),
            "trial_id": cfg.trial_id(),
            "status": summary.status,
            "records": summary.records,
        }
        tmp.write_text(json.dumps(payload, indent=1, default=float, allow_nan=True))
        tmp.replace(args.json)
    print(
        f"status {summary.status} after {summary.epochs_done} epochs, {summary.wall_s:.1f}s",
        file=sys.stderr,
    )
    return 0
