"""One trial: contrastive pretraining of backbone+projector with one loss, then evaluation.

`run_trial(cfg, on_epoch)` knows nothing about Ray or Parquet: it calls `on_epoch(record)` with
one flat record per evaluated label fraction, and `on_checkpoint(state)` after every finished
epoch with everything needed to resume from there (`resume_state=`).

Speed (benchmarks/pipeline.py measures it): the whole training set lives on the device, batches are
index slices of a device-side permutation, both views are made by batched tensor ops on the
device and go through the encoder in one forward pass; bf16 autocast and channels_last on CUDA;
the loss is checked for finiteness every few steps rather than every step, to avoid a host sync
per step.

A non-finite loss ends the trial with status "diverged" and a final record: divergence is data
for the stability curves, never an exception.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bench.config import ConfigError, TrialConfig
from bench.data import Dataset, load_dataset
from bench.data.augment import build_augment
from bench.data.loader import ClassBatches, DeviceBatches
from bench.data.split import carve_validation, masked_labels
from bench.evaluation import Evaluator, empty_eval
from bench.losses import build_loss, loss_info
from bench.models import build_encoder
from bench.optim import build_optimizer, lr_at, trainable_parameters

Record = dict[str, Any]
FINITE_CHECK_EVERY = 25  # steps between host syncs that look for a non-finite loss


@dataclass
class TrialSummary:
    status: str  # done | diverged | timeout
    epochs_done: int
    records: list[Record] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "config key 'device' is 'cuda' but no CUDA device is available; use 'cpu' or 'auto'."
        )
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # model initialisation; data order and views use explicit generators


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor on the CPU: a checkpoint must not alias live parameters."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


class Trial:
    """The mutable state of one trial, built by `prepare_trial`; `run()` trains and evaluates."""

    def __init__(self, cfg: TrialConfig, device: torch.device, dataset: Dataset | None) -> None:
        self.cfg, self.device = cfg, device
        _seed_everything(cfg.seed)
        loaded = dataset or load_dataset(
            cfg.dataset, root=cfg.data_root, download=cfg.download, **dict(cfg.dataset_params)
        )
        # Everything below (pretraining, labels, kNN banks, probes) sees the training split
        # without its validation hold-out.
        self.dataset = carve_validation(loaded, cfg.val_fraction, cfg.split_seed)
        ds = self.dataset
        n_train = ds.train_x.shape[0]
        if cfg.batch_size > n_train:
            raise ConfigError(
                f"config key 'batch_size' is {cfg.batch_size}, larger than the {n_train} "
                f"training samples of dataset {cfg.dataset!r}; use at most {n_train}."
            )
        self.amp = device.type == "cuda"
        self.train_x = ds.train_x.to(device)
        self.test_x = ds.test_x.to(device)
        info = loss_info(cfg.loss)
        self.uses_labels = info.uses_labels
        fraction = cfg.pretrain_fraction if info.uses_labels else 0.0
        self.loss_labels = masked_labels(ds.train_y, fraction, cfg.split_seed).to(device)
        self.encoder = build_encoder(cfg, ds).to(device)
        if self.amp and ds.kind == "image":
            self.encoder = self.encoder.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss(
            cfg.loss,
            num_classes=ds.num_classes,
            dim=self.encoder.embed_dim,
            seed=cfg.seed,
            **dict(cfg.loss_params),
        ).to(device)
        # A loss may own trainable parameters (ce's classifier): optimised, clipped and
        # checkpointed with the encoder's.
        self.optimizer = build_optimizer(cfg, self.encoder, self.loss_fn)
        self.params = trainable_parameters(self.encoder, self.loss_fn)
        self.step_fn: Callable[[Tensor, Tensor], Tensor] = self._forward_loss
        if cfg.compile:
            self.step_fn = torch.compile(self._forward_loss)
        self.augment = build_augment(cfg.augment, ds)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.batches: DeviceBatches | ClassBatches = self._batches(n_train, fraction)
        self.evaluator = Evaluator(cfg, ds, self.train_x, self.test_x, device, self.amp)
        self.epoch = 0
        self.step = 0
        self.elapsed = 0.0  # wall time of earlier attempts, so time_s continues after a resume
        # The evaluation of the last finished finite epoch, reported again if the next epoch
        # diverges: a collapse just before divergence stays visible in the diverged record.
        self.last_eval: dict[float, dict[str, float]] = {}
        # The CPU copy of the weights after the current epoch when it was not evaluated (what a
        # divergence in the next epoch is reported with); None after an evaluated epoch.
        self.last_finite_state: dict[str, Any] | None = None
        self.total_steps = cfg.epochs * len(self.batches)

    def _batches(self, n_train: int, fraction: float) -> DeviceBatches | ClassBatches:
        """The batch sampler; "class" draws from the samples whose labels the loss may see, with
        as many steps per epoch as the random sampler (an epoch is the same compute for all)."""
        cfg, steps = self.cfg, n_train // self.cfg.batch_size
        if cfg.batch_sampler == "random":
            return DeviceBatches(n_train, cfg.batch_size, self.device, self.gen, drop_last=True)
        if not self.uses_labels:
            raise ConfigError(
                f"config key 'batch_sampler' has value 'class', but loss {cfg.loss!r} uses no "
                "labels; class-structured batches need a loss that does (e.g. simo, supcon, ce)."
            )
        assert cfg.classes_per_batch is not None  # TrialConfig validation
        return ClassBatches(
            self.loss_labels, cfg.batch_size, cfg.classes_per_batch, steps, self.gen, fraction
        )

    # --- resume -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "elapsed": self.elapsed,
            # The unevaluated epoch's copy is these very weights: copied once, saved once.
            "encoder": self.last_finite_state or _cpu_copy(self.encoder.state_dict()),
            "loss": _cpu_copy(self.loss_fn.state_dict()),
            "optimizer": _cpu_copy(self.optimizer.state_dict()),
            "generator": self.gen.get_state().cpu(),
            "trial_id": self.cfg.trial_id(),
            "last_eval": self.last_eval,
        }

    def load(self, state: dict[str, Any]) -> None:
        if state.get("trial_id") != self.cfg.trial_id():
            raise ValueError(
                "resume_state belongs to a different trial config; refusing to resume."
            )
        self.encoder.load_state_dict(state["encoder"])
        if "loss" in state:  # checkpoints written before losses could own state have none
            self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        self.epoch, self.step, self.elapsed = state["epoch"], state["step"], state["elapsed"]
        self.last_eval = state.get("last_eval", {})
        # The saved weights are the last finite ones: keep them when their epoch was not evaluated.
        unevaluated = self.epoch > 0 and self.last_eval_epoch() != self.epoch
        self.last_finite_state = state["encoder"] if unevaluated else None

    def _last_finite_eval(self) -> dict[float, dict[str, float]]:
        """Metrics of the model after the last epoch that ended with a finite loss.

        That epoch was evaluated unless `eval_every` skipped it; then its weights were kept
        (`last_finite_state`) and are evaluated now, without probes (they run on final epochs).
        """
        finite_epoch = self.epoch - 1  # self.epoch already counts the diverged epoch
        if finite_epoch < 1:
            return {}
        state = self.last_finite_state
        if state is None or self.last_eval_epoch() == finite_epoch:
            return self.last_eval
        live = _cpu_copy(self.encoder.state_dict())
        self.encoder.load_state_dict(state)
        try:
            per_fraction = self.evaluator.evaluate(self.encoder, final=False)
        finally:
            self.encoder.load_state_dict(live)
        for metrics in per_fraction.values():
            metrics["m_eval_epoch"] = float(finite_epoch)
        return per_fraction

    def last_eval_epoch(self) -> int | None:
        first = next(iter(self.last_eval.values()), None)
        return None if first is None else int(first["m_eval_epoch"])

    # --- training -----------------------------------------------------------------------------
    def _forward_loss(self, x: Tensor, labels: Tensor) -> Tensor:
        v1, v2 = self.augment(x, self.gen)
        views = torch.cat([v1, v2])
        if self.amp and views.dim() == 4:
            views = views.contiguous(memory_format=torch.channels_last)
        # Both views in one forward pass: one kernel launch sequence, full-size BN batches.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            _, z = self.encoder(views)
            z1, z2 = z.chunk(2)
            return self.loss_fn(z1, z2, labels)

    def train_epoch(self, deadline: float | None) -> tuple[str, Record]:
        cfg, steps = self.cfg, len(self.batches)
        self.encoder.train()
        loss_sum = torch.zeros((), device=self.device)
        grad_sum = torch.zeros((), device=self.device)
        terms: dict[str, Tensor] = {}
        done = 0
        status = "running"
        start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        # A control that trains nothing (the `untrained` loss) takes no step: its evaluations
        # read the encoder as initialised.
        for idx in self.batches if getattr(self.loss_fn, "trains_encoder", True) else ():
            lr = lr_at(cfg, self.step, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = self.step_fn(self.train_x[idx], self.loss_labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip = cfg.grad_clip if cfg.grad_clip is not None else math.inf
            grad_sum += nn.utils.clip_grad_norm_(self.params, clip).float()
            self.optimizer.step()
            loss_sum += loss.detach().float()
            for name, value in getattr(self.loss_fn, "last_terms", {}).items():
                terms[name] = terms.get(name, 0) + value.detach().float()
            self.step += 1
            done += 1
            checkpoint = done % FINITE_CHECK_EVERY == 0 or done == steps
            # One host sync every few steps. The gradient norm too: a step whose loss is finite but
            # whose gradients are not leaves NaN weights behind.
            if checkpoint and not torch.isfinite(loss_sum + grad_sum):
                status = "diverged"
                break
            if deadline is not None and time.monotonic() > deadline:
                status = "timeout"
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        epoch_time = time.perf_counter() - start
        if status == "running" and not torch.isfinite(loss_sum + grad_sum):
            status = "diverged"
        n = max(done, 1)
        record: Record = {
            "m_loss": float(loss_sum) / n,
            "m_grad_norm": float(grad_sum) / n,
            "m_lr": lr_at(cfg, max(self.step - 1, 0), steps),
            "m_epoch_time_s": epoch_time,
            "m_images_per_s": done * cfg.batch_size / max(epoch_time, 1e-9),
            "m_peak_mem_mb": _peak_mem_mb(self.device),
            **{f"m_loss_{k}": float(v) / n for k, v in terms.items()},
        }
        if status != "timeout" or done == steps:
            self.epoch += 1
        return status, record

    def run(
        self,
        on_epoch: Callable[[Record], None] | None = None,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> TrialSummary:
        cfg = self.cfg
        t0 = time.monotonic()
        emit = on_epoch or (lambda record: None)
        records: list[Record] = []
        budget_left = None if cfg.time_budget_s is None else cfg.time_budget_s - self.elapsed
        deadline = None if budget_left is None else t0 + max(budget_left, 0.0)
        status = "done"
        while self.epoch < cfg.epochs:
            status, train_record = self.train_epoch(deadline)
            last = self.epoch >= cfg.epochs or status in ("diverged", "timeout")
            if status == "running" and last:
                status = "done"
            if status == "diverged":
                per_fraction = self._last_finite_eval()
                self.last_finite_state = None  # the weights now are this epoch's, not finite
            elif last or self.epoch % cfg.eval_every == 0:
                per_fraction = self.evaluator.evaluate(self.encoder, final=last)
                for metrics in per_fraction.values():
                    metrics["m_eval_epoch"] = float(self.epoch)
                self.last_eval = per_fraction
                self.last_finite_state = None
            else:
                per_fraction = {}
                self.last_finite_state = _cpu_copy(self.encoder.state_dict())
            time_s = self.elapsed + time.monotonic() - t0
            for fraction in cfg.label_fractions:
                record = {
                    "epoch": self.epoch,
                    "step": self.step,
                    "time_s": time_s,
                    "label_fraction": fraction,
                    "status": status,
                    "final": last,
                    **empty_eval(),
                    **train_record,
                    **per_fraction.get(fraction, {}),
                }
                records.append(record)
                emit(record)
            if on_checkpoint is not None:
                state = self.state()
                state["elapsed"] = time_s
                on_checkpoint(state)
            if last:
                break
        return TrialSummary(
            status=status, epochs_done=self.epoch, records=records, wall_s=time.monotonic() - t0
        )


def prepare_trial(
    cfg: TrialConfig,
    resume_state: dict[str, Any] | None = None,
    dataset: Dataset | None = None,
) -> Trial:
    """Load data, build model/loss/optimizer and restore `resume_state`.

    Every error here is bad input (unknown dataset, missing data, bad loss parameter, batch size
    larger than the training set), so callers can report it as such before any training starts.
    """
    trial = Trial(cfg, resolve_device(cfg.device), dataset)
    if resume_state is not None:
        trial.load(resume_state)
    return trial


def run_trial(
    cfg: TrialConfig,
    on_epoch: Callable[[Record], None] | None = None,
    resume_state: dict[str, Any] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    dataset: Dataset | None = None,
) -> TrialSummary:
    """Pretrain and evaluate one trial; see the module docstring for the record format.

    `on_checkpoint(state)` is called after every finished epoch (after that epoch's records);
    passing the state back as `resume_state` continues from there.
    """
    return prepare_trial(cfg, resume_state, dataset).run(on_epoch, on_checkpoint)
