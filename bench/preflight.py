"""Build every distinct trial of a sweep once on the driver, before Ray starts.

A config error that only shows when a trial is built (a loss parameter out of range, more classes
than embedding dimensions for an add-on, class-structured batches the labelled data cannot fill,
a batch larger than the training set) would otherwise surface on the cluster: every trial fails,
is retried, fails again, and the sweep ends with files written. `check_trials` builds each
distinct (loss, parameters, dataset, model, batching) once, on the CPU, without training: the
dataset is loaded once per (dataset, parameters, root) and reused, the model is built but never
run. The first error becomes one `ConfigError` sentence naming the search space and the trial.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.config import ConfigError, TrialConfig

# The config keys that decide whether a trial can be built (everything else - lr, seed, epochs,
# schedule - is validated by TrialConfig itself and cannot fail in prepare_trial).
_BUILD_KEYS = (
    "loss", "loss_params", "dataset", "dataset_params", "data_root", "augment",
    "split_seed", "val_fraction", "label_fractions", "pretrain_label_fraction", "backbone",
    "cifar_stem", "mlp_hidden", "projector", "optimizer", "batch_size", "batch_sampler",
    "classes_per_batch", "ffn_hidden",
)  # fmt: skip


@dataclass
class Preflight:
    """What `check_trials` did: how many distinct builds, and datasets it could not load."""

    built: int = 0
    skipped_data: list[str] = field(default_factory=list)


def affects_build(key: str) -> bool:
    """Whether config key `key` (or `loss_params.P`, `dataset_params.P`) changes what a trial
    builds, i.e. whether building it can fail where other values did not."""
    return key.partition(".")[0] in _BUILD_KEYS


def _key(cfg: TrialConfig) -> str:
    flat = cfg.to_flat()
    return repr([(k, flat[k]) for k in _BUILD_KEYS])


def check_trials(
    trials: Iterable[TrialConfig], source: str, skip_missing_data: bool = False
) -> Preflight:
    """Build each distinct trial once; raise ConfigError (one sentence) at the first that fails.

    `skip_missing_data`: a dataset the driver cannot load (not downloaded here, e.g. it lives on
    the cluster's workers) is skipped, and reported in `Preflight.skipped_data`, instead of
    being an error.
    """
    from bench.data import DataError, load_dataset
    from bench.train import prepare_trial

    result = Preflight()
    datasets: dict[str, object] = {}
    seen: set[str] = set()
    for cfg in trials:
        key = _key(cfg)
        if key in seen:
            continue
        seen.add(key)
        data_key = repr((cfg.dataset, sorted(cfg.dataset_params.items()), cfg.data_root))
        where = f"{source}: trial {cfg.loss!r} on {cfg.dataset!r} (batch {cfg.batch_size})"
        if data_key not in datasets:
            try:
                # A local launch downloads what `download: true` asks for, once, here (as its
                # trials would); a dry run or a cluster's driver never downloads.
                download = cfg.download and not skip_missing_data
                datasets[data_key] = load_dataset(
                    cfg.dataset, root=cfg.data_root, download=download, **dict(cfg.dataset_params)
                )
            except DataError as exc:
                if not skip_missing_data:
                    raise ConfigError(f"{where}: {exc}") from None
                datasets[data_key] = None
                result.skipped_data.append(cfg.dataset)
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"{where}: {_sentence(exc)}") from None
        dataset = datasets[data_key]
        if dataset is None:
            continue
        cheap = cfg.replace(device="cpu", compile=False)
        try:
            prepare_trial(cheap, dataset=dataset)  # type: ignore[arg-type]
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: {_sentence(exc)}") from None
        result.built += 1
    return result


def _sentence(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.strip().strip('"')


def describe(result: Preflight, n_trials: int, what: str = "trials") -> str:
    """One line for --dry-run: what was built and what could not be checked here."""
    line = f"preflight: {result.built} distinct trial build(s) checked for {n_trials} {what}"
    if result.skipped_data:
        names = ", ".join(sorted(set(result.skipped_data)))
        line += f"; data-dependent checks skipped for {names} (not loadable on this machine)"
    return line + "."
