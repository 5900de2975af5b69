"""One trial end to end on CPU: smoke, determinism, divergence, timeout, resume, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.config import ConfigError, TrialConfig
from bench.train import prepare_trial, run_trial

TIMING = {"time_s", "m_epoch_time_s", "m_images_per_s", "m_peak_mem_mb"}

SYNTH = dict(
    dataset="synthetic_subspaces",
    dataset_params={"k": 3, "m": 3, "n_train": 512, "n_test": 256},
    backbone="mlp", mlp_hidden=(32, 32, 32), projector=(32, 16),
    epochs=3, batch_size=64, lr=0.05, device="cpu", probe_epochs=20, geometry_samples=256,
    label_fractions=(0.1, 1.0),
)


# SimO's class-structured batches: P = 2 of the 3 classes x K = 16 labelled samples each.
CLASS_BATCHES = dict(loss="simo", batch_sampler="class", classes_per_batch=2, batch_size=24)


def synth(**changes) -> TrialConfig:
    return TrialConfig(**{**SYNTH, **changes})


def _strip(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _same(a, b) -> bool:
    return all(
        (x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for ra, rb in zip(a, b, strict=True) for (x, y) in zip(ra.values(), rb.values(), strict=True)
    ) and [list(r) for r in a] == [list(r) for r in b]


def test_synthetic_trial_reports_every_epoch_and_fraction():
    seen = []
    summary = run_trial(synth(), on_epoch=seen.append)
    assert summary.status == "done" and summary.epochs_done == 3
    assert len(seen) == 3 * 2 == len(summary.records)
    assert [r["epoch"] for r in seen] == [1, 1, 2, 2, 3, 3]
    assert [r["final"] for r in seen] == [False] * 4 + [True] * 2
    assert seen[-1]["status"] == "done" and seen[0]["status"] == "running"
    last = seen[-1]
    for key in ("m_loss", "m_knn_top1", "m_linear_top1", "m_ffn_top1", "m_h_rankme", "m_z_total_var",
                "m_h_align", "m_images_per_s", "m_grad_norm", "m_lr"):
        assert math.isfinite(last[key]), key
    assert 0.0 <= last["m_knn_top1"] <= 1.0
    # probes are trained only at the end
    assert math.isnan(seen[0]["m_linear_top1"])


def test_digits_trial_with_a_label_using_loss_and_resnet_stem():
    cfg = TrialConfig(dataset="digits", backbone="resnet18", projector=(64, 32), epochs=1,
                      batch_size=128, lr=0.05, device="cpu", loss="cloa+infonce",
                      label_fractions=(0.1,), probe_epochs=5, geometry_samples=128)
    summary = run_trial(cfg)
    assert summary.status == "done"
    rec = summary.records[-1]
    assert math.isfinite(rec["m_loss_addon"]) and rec["m_knn_top1"] > 0.15  # above chance (0.1)


def test_same_seed_same_records():
    a = run_trial(synth(epochs=2)).records
    b = run_trial(synth(epochs=2)).records
    assert _same(_strip(a), _strip(b))
    c = run_trial(synth(epochs=2, seed=1)).records
    assert not _same(_strip(a), _strip(c))


def test_absurd_lr_diverges_with_a_final_record():
    summary = run_trial(synth(lr=1e12, epochs=4, loss="vicreg"))
    assert summary.status == "diverged"
    last = summary.records[-1]
    assert last["final"] and last["status"] == "diverged"
    assert math.isnan(last["m_knn_top1"])


class _NanAfter(torch.nn.Module):
    """Wraps a loss and returns NaN from call `n` on: divergence at a chosen step."""

    def __init__(self, loss, n):
        super().__init__()
        self.loss, self.n, self.calls = loss, n, 0

    def forward(self, z1, z2, labels):
        self.calls += 1
        out = self.loss(z1, z2, labels)
        return out * float("nan") if self.calls > self.n else out


@pytest.mark.parametrize("eval_every", [1, 2])
def test_a_diverged_record_carries_the_metrics_of_the_last_finite_epoch(eval_every):
    cfg = synth(epochs=4, eval_every=eval_every)
    trial = prepare_trial(cfg)
    steps = len(trial.batches)
    trial.loss_fn = _NanAfter(trial.loss_fn, 2 * steps + 1)  # epochs 1-2 finite, 3 diverges
    summary = trial.run()
    assert summary.status == "diverged"
    last = summary.records[-1]
    assert last["status"] == "diverged" and last["epoch"] == 3
    assert last["m_eval_epoch"] == 2.0
    assert math.isfinite(last["m_knn_top1"]) and math.isfinite(last["m_h_nvar"])
    # The same weights as the uninterrupted run's epoch 2 (evaluated there when eval_every=1).
    clean = run_trial(synth(epochs=4, eval_every=1)).records
    epoch2 = [r for r in clean if r["epoch"] == 2][-1]
    assert last["m_knn_top1"] == pytest.approx(epoch2["m_knn_top1"])
    assert last["m_h_total_var"] == pytest.approx(epoch2["m_h_total_var"])


class _NanGradientAfter(torch.nn.Module):
    """Wraps a loss; from call `n` on, adds sqrt(0 * z): the loss stays finite, its gradient is
    NaN, so the step leaves NaN weights behind."""

    def __init__(self, loss, n):
        super().__init__()
        self.loss, self.n, self.calls = loss, n, 0

    def forward(self, z1, z2, labels):
        self.calls += 1
        out = self.loss(z1, z2, labels)
        return out + torch.sqrt((z1 * 0).sum()) if self.calls > self.n else out


def test_a_finite_loss_with_a_non_finite_gradient_is_a_divergence():
    trial = prepare_trial(synth(epochs=4))
    steps = len(trial.batches)
    trial.loss_fn = _NanGradientAfter(trial.loss_fn, 2 * steps - 1)  # the last step of epoch 2
    summary = trial.run()
    last = summary.records[-1]
    assert summary.status == "diverged" and last["epoch"] == 2
    assert last["m_eval_epoch"] == 1.0 and math.isfinite(last["m_knn_top1"])


@pytest.mark.parametrize("eval_every", [1, 2])
def test_a_resumed_trial_still_reports_the_last_finite_epoch_when_it_diverges(eval_every):
    cfg = synth(epochs=4, eval_every=eval_every)
    states = []
    first = prepare_trial(cfg)
    first.run(on_checkpoint=lambda s: states.append(s) if s["epoch"] == 2 else None)
    assert "last_finite_state" not in states[0]  # the encoder is saved once
    trial = prepare_trial(cfg, resume_state=states[0])
    trial.loss_fn = _NanAfter(trial.loss_fn, 0)  # epoch 3 diverges at once
    last = trial.run().records[-1]
    assert last["status"] == "diverged" and last["m_eval_epoch"] == 2.0
    clean = [r for r in run_trial(synth(epochs=4, eval_every=1)).records if r["epoch"] == 2][-1]
    assert last["m_knn_top1"] == pytest.approx(clean["m_knn_top1"])


def test_the_untrained_control_evaluates_the_encoder_as_initialised():
    trial = prepare_trial(synth(loss="untrained", epochs=2, lr=1e6))  # any lr: no step is taken
    before = {k: v.clone() for k, v in trial.encoder.state_dict().items()}
    records = trial.run().records
    after = trial.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [r["status"] for r in records][-1] == "done"
    by_epoch = {(r["epoch"], r["label_fraction"]): r["m_knn_top1"] for r in records}
    assert by_epoch[(1, 0.1)] == by_epoch[(2, 0.1)] and 0.0 < by_epoch[(2, 1.0)] <= 1.0


def test_divergence_in_the_first_epoch_has_no_metrics():
    trial = prepare_trial(synth(epochs=2))
    trial.loss_fn = _NanAfter(trial.loss_fn, 0)
    last = trial.run().records[-1]
    assert last["status"] == "diverged" and math.isnan(last["m_knn_top1"])


def test_records_carry_validation_and_test_accuracies():
    rec = run_trial(synth(epochs=1)).records[-1]
    for key in ("knn_top1", "linear_top1", "ffn_top1"):
        assert 0 <= rec[f"m_{key}"] <= 1 and 0 <= rec[f"m_val_{key}"] <= 1
    assert rec["m_num_classes"] == 3.0
    no_val = run_trial(synth(epochs=1, val_fraction=0.0)).records[-1]
    assert math.isnan(no_val["m_val_knn_top1"]) and math.isfinite(no_val["m_knn_top1"])


def test_time_budget_gives_timeout():
    summary = run_trial(synth(epochs=200, time_budget_s=0.5))
    assert summary.status == "timeout"
    assert summary.records[-1]["final"] and summary.epochs_done < 200
    assert math.isfinite(summary.records[-1]["m_knn_top1"])  # still evaluated


# ce owns parameters, and class batches are drawn from the trial's generator: both resume too.
@pytest.mark.parametrize(
    "changes", [{}, {"loss": "ce"}, CLASS_BATCHES], ids=["infonce", "ce", "simo_class"]
)
def test_resume_from_a_checkpoint_continues_exactly(changes):
    full = run_trial(synth(epochs=3, **changes)).records
    states = []
    run_trial(synth(epochs=3, **changes), on_checkpoint=states.append)
    assert [s["epoch"] for s in states] == [1, 2, 3]
    state = torch.load(_roundtrip(states[0]), weights_only=False)
    resumed = run_trial(synth(epochs=3, **changes), resume_state=state).records
    assert [r["epoch"] for r in resumed] == [2, 2, 3, 3]
    assert _same(_strip(resumed), _strip(full[2:]))


def test_loss_parameters_are_optimised_clipped_and_checkpointed():
    trial = prepare_trial(synth(loss="ce", epochs=1, grad_clip=1.0))
    weight = trial.loss_fn.classifier.weight
    optimised = {id(p) for group in trial.optimizer.param_groups for p in group["params"]}
    assert id(weight) in optimised and any(p is weight for p in trial.params)
    before = weight.detach().clone()
    states = []
    trial.run(on_checkpoint=states.append)
    assert not torch.equal(before, weight.detach())  # trained
    assert torch.equal(states[-1]["loss"]["classifier.weight"], weight.detach().cpu())


# Digits, MLP backbone whose 8-d output is what ce classifies (projector []), labels of 10% of
# the training set (~144 samples). Measured kNN top-1 (k=20, bank = the same 10%): ce 0.886 /
# 0.892 (seeds 0 / 1) against 0.497 / 0.539 for the same encoder untrained (a loss that learns
# nothing); a narrow backbone keeps random features far from the threshold (with 128-d random
# features kNN already reaches 0.85 on digits).
DIGITS_CE = dict(
    dataset="digits", backbone="mlp", mlp_hidden=(64, 8), projector=(), augment="none",
    loss="ce", pretrain_label_fraction=0.1, label_fractions=(0.1,), epochs=20, batch_size=64,
    lr=0.05, device="cpu", probe_epochs=0, geometry_samples=128, knn_k=20,
)


def test_ce_learns_digits_from_ten_percent_of_the_labels():
    trained = run_trial(TrialConfig(**DIGITS_CE)).records[-1]
    untrained = run_trial(TrialConfig(**{**DIGITS_CE, "lr": 1e-9, "epochs": 1})).records[-1]
    assert trained["m_knn_top1"] > 0.7 > untrained["m_knn_top1"]
    assert trained["m_loss"] < 0.1  # the labelled samples are fitted


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_resume_state_of_another_config_is_refused():
    states = []
    run_trial(synth(epochs=1), on_checkpoint=states.append)
    with pytest.raises(ValueError, match="different trial"):
        prepare_trial(synth(epochs=1, lr=0.2), resume_state=states[0])


def test_batch_larger_than_training_set_is_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        prepare_trial(synth(batch_size=100_000))


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"label_fractions": (0.0,)}, "label_fraction"), ({"label_fractions": (1.5,)}, "label_fraction"),
     ({"lr": -1.0}, "lr"), ({"optimizer": "adam9"}, "optimizer"), ({"batch_size": 1}, "batch_size"),
     ({"val_fraction": 0.5}, "val_fraction"), ({"val_fraction": -0.1}, "val_fraction"),
     ({"probe_features": "whitened"}, "probe_features"), ({"probe_optimizer": "lbfgs"}, "probe_optimizer"),
     ({"probe_lr": 0.0}, "probe_lr"), ({"probe_lr": float("inf")}, "probe_lr"),
     ({"probe_batch_size": 0}, "probe_batch_size"),
     ({"batch_sampler": "classes"}, "batch_sampler"),
     ({"batch_sampler": "class"}, "classes_per_batch"),
     ({"batch_sampler": "class", "classes_per_batch": 5}, "classes_per_batch"),
     ({"batch_sampler": "class", "classes_per_batch": 0}, "classes_per_batch"),
     ({"classes_per_batch": 4}, "classes_per_batch"),
     ({"batch_sampler": "class", "classes_per_batch": 4, "pretrain_label_fraction": 0.0},
      "pretrain_label_fraction")],
)
def test_bad_config_values_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=key) as info:
        synth(**changes)
    assert "\n" not in str(info.value)



def test_class_batches_feed_the_loss_p_classes_of_labelled_samples():
    trial = prepare_trial(synth(**CLASS_BATCHES))
    n_train = len(trial.dataset.train_y)  # 512 less the validation hold-out
    assert len(trial.batches) == n_train // 24  # as many steps per epoch as the random sampler
    for idx in trial.batches:
        y = trial.loss_labels[idx].reshape(2, 12)
        assert (y >= 0).all() and (y == y[:, :1]).all() and y[0, 0] != y[1, 0]
    summary = trial.run()
    assert summary.status == "done" and math.isfinite(summary.records[-1]["m_knn_top1"])


@pytest.mark.parametrize(
    ("changes", "needles"),
    [({"loss": "infonce"}, ["'batch_sampler'", "'infonce' uses no labels"]),
     ({"classes_per_batch": 4}, ["'classes_per_batch' has value 4", "only 3 classes"]),
     ({"batch_size": 64, "classes_per_batch": 2}, ["32 samples of each class", "labels of 10%"])],
)
def test_class_batches_that_the_data_cannot_give_are_bad_input(changes, needles):
    with pytest.raises(ConfigError) as info:
        prepare_trial(synth(**{**CLASS_BATCHES, **changes}))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_cli_run_writes_json_and_rejects_bad_input(tmp_path, capsys):
    from bench.cli import main

    out = tmp_path / "r.json"
    rc = main(["run", "dataset=synthetic_subspaces", "backbone=mlp", "mlp_hidden=[16,16]",
               "projector=[16,8]", "epochs=1", "batch_size=32", "probe_epochs=2",
               "geometry_samples=64", "dataset_params.n_train=128", "dataset_params.n_test=64",
               "--device", "cpu", "--json", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    assert payload["status"] == "done" and len(payload["records"]) == 1
    assert "epoch   1" in capsys.readouterr().out
    assert main(["run", "--dataset", "imagenet42", "--device", "cpu"]) == 2
    assert "imagenet42" in capsys.readouterr().err
    assert main(["run", "label_fraction=2", "--device", "cpu"]) == 2
    assert main(["run", "--loss", "infonse", "--device", "cpu"]) == 2
    assert "infonce" in capsys.readouterr().err


def test_every_record_key_has_a_declared_store_column():
    """The trainer's records and the store's schema must not drift apart: every metric of a
    built-in loss has its own m_* column (only a plugin's own terms go to m_extra)."""
    from bench.store import METRIC_COLUMNS, SCHEMA

    records = run_trial(synth(epochs=1, loss="clop+vicreg", probe_epochs=2)).records
    names = set(SCHEMA.names)
    for key in records[-1]:
        assert key in METRIC_COLUMNS or key in names or key == "final", key
