"""Metrics against closed forms and reference implementations (bench/metrics/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.metrics.geometry import GEOMETRY_KEYS, geometry
from bench.metrics.knn import knn_accuracy, knn_class_scores
from bench.metrics.probes import train_probe


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blobs(n: int, d: int, c: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    centres = torch.randn(c, d, generator=g) * 3
    y = torch.randint(0, c, (n,), generator=g)
    return centres[y] + noise * torch.randn(n, d, generator=g), y


# --------------------------------------------------------------------------- kNN


def _lightly_accuracy(bank, bank_y, query, query_y, c, k, t):
    # Imported here: lightly is slow to import and only these reference tests need it.
    from lightly.utils.benchmarking.knn import knn_predict

    pred = knn_predict(F.normalize(query, dim=1), F.normalize(bank, dim=1).T, bank_y, c, k, t)
    top1 = (pred[:, 0] == query_y).double().mean().item()
    top5 = (pred[:, : min(5, c)] == query_y[:, None]).any(dim=1).double().mean().item()
    return pred, top1, top5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_knn_matches_lightly_knn_predict(dtype):
    bank, bank_y = _blobs(600, 24, 10, noise=4.0, seed=1)
    query, query_y = _blobs(300, 24, 10, noise=4.0, seed=2)
    bank, query = bank.to(dtype), query.to(dtype)
    pred, ref1, ref5 = _lightly_accuracy(bank, bank_y, query, query_y, 10, 50, 0.1)
    assert 0.05 < ref1 < 0.95  # neither trivial nor chance, so a wrong ranking would show
    top1, top5 = knn_accuracy(bank, bank_y, query, query_y, 10, k=50, temperature=0.1, chunk=64)
    assert (top1, top5) == pytest.approx((ref1, ref5), abs=1e-12)
    ours = knn_class_scores(
        F.normalize(bank, dim=1), bank_y, F.normalize(query, dim=1), 10, 50, 0.1
    ).argsort(dim=1, descending=True)
    assert torch.equal(ours[:, :5], pred[:, :5])


def test_knn_chunking_k_clipping_and_unlabelled_bank_rows():
    bank, bank_y = _blobs(120, 8, 4, noise=3.0, seed=3)
    query, query_y = _blobs(50, 8, 4, noise=3.0, seed=4)
    full = knn_accuracy(bank, bank_y, query, query_y, 4, k=30)
    assert knn_accuracy(bank, bank_y, query, query_y, 4, k=30, chunk=1) == full
    # k larger than the bank is clipped to the bank (here: every bank row votes).
    _, ref1, _ = _lightly_accuracy(bank, bank_y, query, query_y, 4, 120, 0.1)
    assert knn_accuracy(bank, bank_y, query, query_y, 4, k=10_000)[0] == pytest.approx(ref1)
    # Unlabelled rows (-1) are not in the bank.
    extra = torch.randn(40, 8, generator=_gen(5))
    with_unlabelled = knn_accuracy(
        torch.cat([bank, extra]),
        torch.cat([bank_y, torch.full((40,), -1)]),
        query,
        query_y,
        4,
        k=30,
    )
    assert with_unlabelled == full
    # Fewer than 5 classes: top-5 is top-min(5, C) = always right.
    assert full[1] == 1.0


def test_knn_perfect_clusters_and_degenerate_inputs():
    bank, bank_y = _blobs(200, 16, 5, noise=0.01, seed=6)
    assert knn_accuracy(bank, bank_y, bank, bank_y, 5, k=20) == (1.0, 1.0)
    bad = bank.clone()
    bad[3, 0] = math.nan
    assert all(math.isnan(v) for v in knn_accuracy(bad, bank_y, bank, bank_y, 5))
    assert all(math.isnan(v) for v in knn_accuracy(bank, bank_y, bank[:0], bank_y[:0], 5))
    # Collapsed features: all similarities tie; no crash, a valid fraction.
    top1, _ = knn_accuracy(torch.ones(50, 4), bank_y[:50], torch.ones(10, 4), bank_y[:10], 5)
    assert 0.0 <= top1 <= 1.0
    with pytest.raises(ValueError, match="num_classes"):
        knn_accuracy(bank, bank_y, bank, bank_y, 3)


@pytest.mark.parametrize("metric", ["knn", "probe"])
@pytest.mark.parametrize(
    "case, needle",
    [("features", "same feature size"), ("labels", "one label per row"),
     ("range", "contains 7, which is not below num_classes=5"),
     ("unlabelled", "every label is < 0")],
)  # fmt: skip
def test_knn_and_probes_refuse_mismatched_inputs_in_one_sentence(metric, case, needle):
    x, y = _blobs(40, 8, 5, noise=0.1, seed=1)
    qx, qy = x[:10].clone(), y[:10].clone()
    if case == "features":
        qx = qx[:, :4]
    elif case == "labels":
        qy = qy[:5]
    elif case == "range":
        qy[0] = 7
    else:
        y = torch.full_like(y, -1)
    fn = "knn_accuracy" if metric == "knn" else "train_probe"
    with pytest.raises(ValueError, match=needle) as err:
        if metric == "knn":
            knn_accuracy(x, y, qx, qy, 5)
        else:
            train_probe(x, y, qx, qy, 5, epochs=1)
    assert str(err.value).startswith(fn)


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("hidden", [(), (256, 128, 64)])
def test_probe_separable_features_reach_full_accuracy(hidden):
    x, y = _blobs(1000, 32, 10, noise=0.3, seed=7)
    top1, top5 = train_probe(x[:600], y[:600], x[600:], y[600:], 10, hidden=hidden, epochs=30)
    assert top1 >= 0.99 and top5 == 1.0


def test_probe_random_labels_are_at_chance():
    g = _gen(8)
    x = torch.randn(1200, 32, generator=g)
    y = torch.randint(0, 10, (1200,), generator=g)
    top1, top5 = train_probe(x[:800], y[:800], x[800:], y[800:], 10, epochs=30)
    assert 0.03 < top1 < 0.2 and 0.35 < top5 < 0.65


def test_probe_works_under_inference_mode():
    x, y = _blobs(300, 16, 5, noise=0.3, seed=20)
    tensors = (x[:200], y[:200], x[200:], y[200:])
    expected = train_probe(*tensors, 5, hidden=(32,), epochs=5)
    with torch.inference_mode():  # how a trainer may call its evaluation
        inference_tensors = [t.clone() for t in tensors]
        assert train_probe(*inference_tensors, 5, hidden=(32,), epochs=5) == expected


def test_probe_is_deterministic_and_leaves_global_rng_alone():
    x, y = _blobs(400, 16, 5, noise=3.0, seed=9)
    state = torch.get_rng_state()
    a = train_probe(x[:300], y[:300], x[300:], y[300:], 5, hidden=(32,), epochs=20, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = train_probe(x[:300], y[:300], x[300:], y[300:], 5, hidden=(32,), epochs=20, seed=3)
    assert a == b


def test_probe_ignores_unlabelled_rows_and_survives_degenerate_features():
    x, y = _blobs(400, 16, 5, noise=0.3, seed=10)
    y_masked = y.clone()
    y_masked[:150] = -1
    # Unlabelled rows carry deliberately wrong features: they must not be used.
    x_bad = x.clone()
    x_bad[:150] = 100.0
    assert train_probe(x_bad[:300], y_masked[:300], x[300:], y[300:], 5, epochs=30)[0] >= 0.99
    # Collapsed (identical) features: no crash; only the bias learns, so the head predicts the
    # majority class of the training labels for every test sample.
    y_train = torch.cat([torch.full((120,), 2), y[120:300]])  # class 2 is a clear majority
    top1, _ = train_probe(torch.ones(300, 8), y_train, torch.ones(100, 8), y[300:], 5)
    assert top1 == pytest.approx((y[300:] == 2).float().mean().item())
    nan_x = x.clone()
    nan_x[0, 0] = math.inf
    assert all(math.isnan(v) for v in train_probe(nan_x[:300], y[:300], x[300:], y[300:], 5))


# --------------------------------------------------------------------------- geometry


def _numpy_rankme(x: np.ndarray) -> float:
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


def _numpy_nc1(h: np.ndarray, y: np.ndarray) -> float:
    classes = np.unique(y)
    mu_g = h.mean(axis=0)
    sw = np.zeros((h.shape[1], h.shape[1]))
    sb = np.zeros_like(sw)
    for c in classes:
        hc = h[y == c]
        mu = hc.mean(axis=0)
        sw += (hc - mu).T @ (hc - mu)
        sb += np.outer(mu - mu_g, mu - mu_g)
    sw /= h.shape[0]
    sb /= len(classes)
    return float(np.trace(sw @ np.linalg.pinv(sb)) / len(classes))


def test_geometry_of_identical_embeddings():
    emb = torch.tensor([[0.3, -1.2, 2.0, 0.5]]).repeat(64, 1)
    labels = torch.arange(64) % 4
    g = geometry(emb, labels, view_a=emb, view_b=emb.clone())
    assert tuple(g) == GEOMETRY_KEYS and all(type(v) is float for v in g.values())
    assert g["total_var"] == pytest.approx(0.0, abs=1e-12)
    assert g["rankme"] == pytest.approx(1.0, abs=1e-4)
    assert g["rank95"] == 1.0
    assert g["std"] == pytest.approx(0.0, abs=1e-12)
    assert g["align"] == pytest.approx(0.0, abs=1e-12)
    assert g["uniform"] == pytest.approx(0.0, abs=1e-12)  # log E exp(0)
    assert g["class_cos"] == pytest.approx(1.0)  # every class mean points the same way
    assert math.isnan(g["nc1"]) and math.isnan(g["class_cos_centered"])  # 0/0


def test_geometry_orthonormal_class_means_and_zero_within_class_spread():
    d, c = 8, 5
    basis = torch.linalg.qr(torch.randn(d, d, generator=_gen(11), dtype=torch.float64))[0]
    labels = torch.arange(100) % c
    emb = basis[labels]  # every sample equals its (unit, mutually orthogonal) class mean
    g = geometry(emb, labels)
    assert g["class_cos"] == pytest.approx(0.0, abs=1e-12)
    assert g["nc1"] == pytest.approx(0.0, abs=1e-12)
    # Centred means of C orthonormal vectors form a simplex ETF: |cos| = 1/(C-1).
    assert g["class_cos_centered"] == pytest.approx(1 / (c - 1))
    assert g["rank95"] == c and g["rankme"] == pytest.approx(c, rel=1e-4)


def test_geometry_isotropic_gaussian():
    d = 16
    emb = torch.randn(20_000, d, generator=_gen(12))
    g = geometry(emb)
    assert g["rankme"] == pytest.approx(d, rel=0.01)
    assert g["std"] == pytest.approx(1 / math.sqrt(d), rel=0.01)
    assert g["total_var"] == pytest.approx(d, rel=0.03)
    assert all(math.isnan(g[k]) for k in ("align", "nc1", "class_cos", "class_cos_centered"))


def test_total_variance_on_the_sphere_is_one_minus_squared_mean_resultant():
    u = F.normalize(torch.randn(500, 10, generator=_gen(13), dtype=torch.float64) + 0.7, dim=1)
    assert geometry(u)["total_var"] == pytest.approx(1 - u.mean(dim=0).square().sum().item())


@pytest.mark.parametrize("shape", [(300, 12), (10, 40)])  # Gram path (N > d) and SVD path
def test_rankme_and_rank95_match_numpy(shape):
    g = _gen(14)
    x = torch.randn(*shape, generator=g) * torch.logspace(0, -3, shape[1]) + 0.5
    out = geometry(x)
    assert out["rankme"] == pytest.approx(_numpy_rankme(x.double().numpy()), rel=1e-6)
    s = np.linalg.svd(x.double().numpy(), compute_uv=False)
    assert out["rank95"] == float(np.argmax(np.cumsum(s) >= 0.95 * s.sum()) + 1)


def test_nc1_matches_numpy_pinv_formula():
    x, y = _blobs(400, 12, 6, noise=2.0, seed=15)
    y[:37] = -1  # unlabelled rows are ignored
    keep = (y >= 0).numpy()
    ref = _numpy_nc1(x.double().numpy()[keep], y.numpy()[keep])
    assert geometry(x, y)["nc1"] == pytest.approx(ref, rel=1e-8)


def test_uniformity_alignment_and_std_match_reference_formulas():
    from lightly.utils.debug import std_of_l2_normalized

    g = _gen(16)
    x = torch.randn(300, 8, generator=g) + 0.3
    a, b = x[:100], x[:100] + 0.5 * torch.randn(100, 8, generator=g)
    out = geometry(x, view_a=a, view_b=b)
    # SsnL/align_uniform:align_uniform/__init__.py, on L2-normalised features.
    u = F.normalize(x.double(), dim=1)
    assert out["uniform"] == pytest.approx(
        torch.pdist(u, p=2).pow(2).mul(-2).exp().mean().log().item(), rel=1e-10
    )
    fa, fb = F.normalize(a.double(), dim=1), F.normalize(b.double(), dim=1)
    assert out["align"] == pytest.approx((fa - fb).norm(p=2, dim=1).pow(2).mean().item())
    assert out["std"] == pytest.approx(std_of_l2_normalized(x).item(), rel=1e-5)


def test_uniformity_subsamples_large_inputs():
    x = torch.randn(5000, 6, generator=_gen(17))
    ref = torch.pdist(F.normalize(x[:2048].double(), dim=1)).pow(2).mul(-2).exp().mean().log()
    assert geometry(x)["uniform"] == pytest.approx(ref.item(), abs=0.02)


@pytest.mark.parametrize(
    "case", ["zeros", "nan_row", "inf", "empty", "one_row", "one_dim", "no_labels", "one_class"]
)
def test_geometry_never_raises_on_degenerate_input(case):
    emb = torch.randn(32, 6, generator=_gen(18))
    labels = torch.arange(32) % 3
    if case == "zeros":
        emb = torch.zeros(32, 6)
    elif case == "nan_row":
        emb[5] = math.nan
    elif case == "inf":
        emb[0, 0] = math.inf
    elif case == "empty":
        emb, labels = emb[:0], labels[:0]
    elif case == "one_row":
        emb, labels = emb[:1], labels[:1]
    elif case == "one_dim":
        emb = emb[:, :1]
    elif case == "no_labels":
        labels = torch.full((32,), -1)
    elif case == "one_class":
        labels = torch.zeros(32, dtype=torch.long)
    out = geometry(emb, labels, view_a=emb, view_b=emb)
    assert tuple(out) == GEOMETRY_KEYS and all(type(v) is float for v in out.values())
    if case in ("nan_row", "inf", "empty"):
        assert all(math.isnan(out[k]) for k in GEOMETRY_KEYS)
    if case == "zeros":
        assert out["total_var"] == 0.0 and out["rank95"] == 0.0 and out["std"] == 0.0
        assert math.isnan(out["rankme"]) and math.isnan(out["nc1"])
    if case in ("no_labels", "one_class"):
        assert math.isnan(out["nc1"]) and math.isnan(out["class_cos"])


def test_normalised_variance_closed_forms():
    # Antipodal pairs: the mean direction is 0, so nvar = 1 - 0 = 1 whatever the scale.
    e = torch.eye(4, dtype=torch.float64)
    assert geometry(torch.cat([e, -e]) * 1e-6)["nvar"] == pytest.approx(1.0)
    # One direction at many scales: fully collapsed in direction, not in total variance.
    line = torch.linspace(1, 100, 50, dtype=torch.float64)[:, None] * torch.tensor([[3.0, 4.0]])
    out = geometry(line)
    assert out["nvar"] == pytest.approx(0.0, abs=1e-12) and out["total_var"] > 100
    # Shrinking never changes it (unlike total_var); it equals 1 - |mean u|^2 exactly.
    x, _ = _blobs(300, 8, 3, noise=1.0, seed=5)
    u = F.normalize(x.double(), dim=1)
    expected = 1 - float((u.mean(0) ** 2).sum())
    assert geometry(x)["nvar"] == pytest.approx(expected, rel=1e-9)
    assert geometry(x * 1e-4)["nvar"] == pytest.approx(expected, rel=1e-6)


def test_dead_unit_share_closed_forms():
    x, _ = _blobs(200, 8, 3, noise=1.0, seed=6)
    assert geometry(x)["dead"] == 0.0
    relu_dead = x.clone()
    relu_dead[:, :3] = 0.0  # three ReLU units that never fire
    relu_dead[:, 3] = 7.0  # and one stuck at a constant
    assert geometry(relu_dead)["dead"] == pytest.approx(4 / 8)
    assert geometry(torch.ones(50, 6))["dead"] == 1.0


def test_standardized_probe_survives_shrinking_but_the_raw_sgd_probe_does_not():
    # CLOA's claim is about scale: a representation that shrank by 1e-4 should look collapsed to
    # the paper's probe (raw features, SGD) and not to the standardising one, at the same budget.
    x, y = _blobs(900, 16, 5, noise=1.0, seed=8)
    small = x * 1e-4
    common = dict(hidden=(256, 128, 64), epochs=30, batch_size=32, seed=0)
    std_full = train_probe(x[:600], y[:600], x[600:], y[600:], 5, **common)[0]
    std_small = train_probe(small[:600], y[:600], small[600:], y[600:], 5, **common)[0]
    raw = dict(common, features="raw", optimizer="sgd")
    raw_full = train_probe(x[:600], y[:600], x[600:], y[600:], 5, **raw)[0]
    raw_small = train_probe(small[:600], y[:600], small[600:], y[600:], 5, **raw)[0]
    assert std_full > 0.9 and abs(std_small - std_full) < 0.03
    assert raw_full > 0.9 and raw_small < 0.45  # chance is 0.2


def test_probe_rejects_an_unknown_recipe():
    x, y = _blobs(50, 4, 2, noise=1.0, seed=1)
    with pytest.raises(ValueError, match="features"):
        train_probe(x, y, x, y, 2, features="whitened")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_metrics_run_on_cuda_and_agree_with_cpu():
    x, y = _blobs(800, 32, 10, noise=3.0, seed=19)
    cpu_knn = knn_accuracy(x[:500], y[:500], x[500:], y[500:], 10)
    gpu_knn = knn_accuracy(x[:500].cuda(), y[:500].cuda(), x[500:].cuda(), y[500:].cuda(), 10)
    assert gpu_knn == pytest.approx(cpu_knn, abs=2 / 300)
    top1, _ = train_probe(
        x[:500].cuda(), y[:500].cuda(), x[500:].cuda(), y[500:].cuda(), 10, hidden=(256, 128, 64)
    )
    assert 0.0 <= top1 <= 1.0
    cpu_geo, gpu_geo = geometry(x, y), geometry(x.cuda(), y.cuda())
    assert gpu_geo == pytest.approx(cpu_geo, rel=1e-6)
