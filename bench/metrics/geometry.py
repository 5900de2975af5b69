"""Geometry and collapse metrics of an embedding matrix: the ``geometry`` metric family.

``geometry(emb, labels, view_a, view_b)`` (the family's ``measure``) returns a dict of python
floats with the keys in ``GEOMETRY_KEYS``; the evaluator stores them for the backbone features
(``m_h_<key>``) and the projections (``m_z_<key>``). Everything is computed in float64 on the embeddings' device (on the CPU for
devices without float64, e.g. MPS). The function never raises on degenerate input: a metric that
is undefined (non-finite embeddings, too few rows or classes, 0/0) is NaN.

Conventions (the spec leaves them open; chosen so the closed forms in the tests hold exactly):

* ``total_var`` uses the population variance (divide by N), so on unit vectors
  ``total_var = 1 - ||mean u||^2`` exactly.
* ``rankme`` and ``rank95`` use the singular values of the raw, UNCENTERED N x d matrix, as
  RankMe does (Garrido et al. 2023, arXiv 2210.02885). Identical non-zero rows
  give a rank-1 matrix: rankme 1, rank95 1. An all-zero matrix gives rank95 0 and rankme NaN
  (the formula's 0/0).
* ``std`` is lightly's ``std_of_l2_normalized`` (unbiased std per dimension, then the mean).
* Zero rows stay zero when L2-normalised (``F.normalize`` semantics, as lightly).
* ``nvar`` is the total variance of the L2-normalised rows, ``1 - ||mean u||^2`` (population
  variance; rows that are all zero count as the zero vector). It is bounded by [0, 1] whatever
  the embeddings' scale, so it tells collapse (0: every row points the same way, or along one
  line with one sign) apart from mere shrinking, which ``total_var`` cannot (CLOA Fig. 2 plots
  total variance; a loss that only rescales moves it by orders of magnitude).
* ``dead`` is the share of feature dimensions whose values are identical over the evaluation
  subset (variance below ``DEAD_REL_VAR`` of the largest dimension's variance, or all zero): a
  ReLU backbone loses units this way; a dead share of 1 is a constant representation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# Read by `bench.metrics.declared()` without importing this module: keep it a literal.
FAMILY: dict[str, Any] = {
    "scope": "embedding",
    "keys": (
        "total_var",
        "rankme",
        "rank95",
        "align",
        "uniform",
        "nc1",
        "class_cos",
        "class_cos_centered",
        "std",
        "nvar",
        "dead",
    ),
}
GEOMETRY_KEYS: tuple[str, ...] = FAMILY["keys"]

RANKME_EPS = 1e-7  # Garrido et al. 2023, as third-party implementations use it
UNIFORM_T = 2.0  # Wang & Isola 2020, t = 2
UNIFORM_MAX_ROWS = 2048  # all pairs cost O(N^2): uniformity on an evenly spaced subset of rows
DEAD_REL_VAR = 1e-12  # a dimension this much flatter than the widest one carries nothing
_NAN = math.nan


def _f64(x: Tensor) -> Tensor:
    x = x.detach()
    if x.device.type == "mps":  # MPS has no float64
        x = x.cpu()
    return x.to(torch.float64)


def _is_finite(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def singular_values(x: Tensor) -> Tensor:
    """Singular values (descending) of an (N, d) float64 matrix.

    Computed as square roots of the eigenvalues of the smaller Gram matrix (X^T X or X X^T):
    several times faster than an SVD. In float64 the squared condition number only blurs values
    below ~1e-8 sigma_max, which carry no weight in RankMe or the 95% mass.
    """
    gram = x.T @ x if x.shape[0] >= x.shape[1] else x @ x.T
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(0)


def rankme(sigma: Tensor, eps: float = RANKME_EPS) -> float:
    """RankMe = exp(entropy of p), p_k = sigma_k / ||sigma||_1 + eps (Garrido et al. 2023)."""
    total = sigma.sum()
    if not total > 0:
        return _NAN
    p = sigma / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def rank_at_mass(sigma: Tensor, mass: float = 0.95) -> float:
    """min r with sum_{k<=r} sigma_k >= mass * sum_k sigma_k (CLOA Fig. 3 "95% concentration")."""
    total = sigma.sum()
    if not total > 0:
        return 0.0
    cum = sigma.cumsum(0)
    # Relative slack so a rank-r matrix with float noise in the tail still reads exactly r.
    return float((cum < mass * total * (1 - 1e-12)).sum() + 1)


def alignment(view_a: Tensor, view_b: Tensor) -> float:
    """Wang & Isola L_align (alpha=2): mean ||f(a_i) - f(b_i)||^2 over L2-normalised pairs."""
    a = F.normalize(_f64(view_a), dim=1)
    b = F.normalize(_f64(view_b).to(a.device), dim=1)
    if a.shape[0] == 0 or not (_is_finite(a) and _is_finite(b)):
        return _NAN
    return float((a - b).square().sum(dim=1).mean())


def uniformity(u: Tensor, t: float = UNIFORM_T, max_rows: int = UNIFORM_MAX_ROWS) -> float:
    """Wang & Isola L_uniform = log mean_{i<j} exp(-t ||u_i - u_j||^2) on L2-normalised rows.

    Uses at most ``max_rows`` evenly spaced rows (deterministic) and a log-sum-exp.
    """
    n = u.shape[0]
    if n < 2:
        return _NAN
    if n > max_rows:
        u = u[torch.linspace(0, n - 1, max_rows, device=u.device).round().long()]
    # Squared distances from the Gram matrix (one matmul; torch.pdist does not use BLAS and is
    # ~10x slower at 2048 x 2048); float64 keeps the cancellation error near 1e-16.
    sq_norms = u.square().sum(dim=1)
    i, j = torch.triu_indices(u.shape[0], u.shape[0], offset=1, device=u.device)
    sq = (sq_norms[i] + sq_norms[j] - 2 * (u @ u.T)[i, j]).clamp_min(0)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))


def _class_means(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(class ids present, per-class means (C, d), per-sample index into the classes)."""
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = torch.zeros(classes.numel(), x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, inverse, x)
    return classes, sums / counts[:, None].to(x.dtype), inverse


def nc1(h: Tensor, labels: Tensor) -> float:
    """Papyan et al. 2020 NC1 = (1/C) tr(Sigma_W Sigma_B^+), labels >= 0 only.

    With M the d x C matrix of centred class means (Sigma_B = M M^T / C) and D the N x d
    within-class deviations (Sigma_W = D^T D / N): NC1 = (1/N) sum_k ||D u_k||^2 / s_k^2 over the
    singular pairs (s_k, u_k) of M. Singular values are kept where s_k^2 exceeds the default
    pseudo-inverse cut-off of Sigma_B (d * eps64 * s_max^2), so this equals pinv(Sigma_B) without
    forming or inverting a d x d matrix. NaN with fewer than 2 classes or equal class means.
    """
    keep = labels >= 0
    h, labels = h[keep], labels[keep]
    if h.shape[0] == 0:
        return _NAN
    _, means, inverse = _class_means(h, labels)
    n_classes, d = means.shape
    if n_classes < 2:
        return _NAN
    centred = (means - h.mean(dim=0)).T  # (d, C)
    dev = h - means[inverse]  # (N, d)
    try:
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    except RuntimeError:  # LinAlgError on a pathological matrix: NaN, never a crash
        return _NAN
    scale = h.square().sum(dim=1).mean().sqrt()  # RMS row norm: what "equal means" is relative to
    if not s[0] > 1e-12 * scale:
        return _NAN
    kept = s.square() > d * torch.finfo(s.dtype).eps * s[0].square()
    proj = dev @ u[:, kept]  # (N, r)
    return float((proj.square() / s[kept].square()).sum() / h.shape[0])


def mean_abs_cos(vectors: Tensor) -> float:
    """mean_{c<c'} |cos(v_c, v_c')| of unit-scale vectors (class means of normalised embeddings).

    Pairs with a (near) zero vector have no cosine and are skipped; NaN if no pair is left.
    """
    norms = vectors.norm(dim=1)
    ok = norms > 1e-12
    unit = vectors / norms.clamp_min(1e-300)[:, None]
    cos = (unit @ unit.T).abs()  # C x C Gram, not C^2/2 x d pair tensors
    i, j = torch.triu_indices(vectors.shape[0], vectors.shape[0], offset=1, device=vectors.device)
    valid = ok[i] & ok[j]
    if not bool(valid.any()):
        return _NAN
    return float(cos[i[valid], j[valid]].mean())


def dead_share(var: Tensor, rel: float = DEAD_REL_VAR) -> float:
    """Share of dimensions with (relatively) zero variance; 1.0 when every dimension is flat."""
    top = var.max()
    if not top > 0:
        return 1.0
    return float((var <= rel * top).double().mean())


def geometry(
    emb: Tensor,
    labels: Tensor | None = None,
    view_a: Tensor | None = None,
    view_b: Tensor | None = None,
) -> dict[str, float]:
    """All geometry / collapse metrics of ``emb`` (N, d) as a dict keyed by ``GEOMETRY_KEYS``.

    Args:
        emb: embeddings of a fixed evaluation subset (backbone features or projections).
        labels: (N,) class labels, < 0 for unlabelled (ignored by nc1 and the class cosines);
            None means no labels (those metrics are NaN).
        view_a, view_b: (B, d') two augmented views of the same B samples for ``align``
            (NaN if either is None).
    """
    if emb.ndim != 2:
        raise ValueError(f"geometry needs a 2-D embedding matrix, got shape {tuple(emb.shape)}.")
    if labels is not None and labels.shape != (emb.shape[0],):
        raise ValueError(
            f"geometry needs one label per row of emb {tuple(emb.shape)}, got labels "
            f"of shape {tuple(labels.shape)}."
        )
    if (view_a is None) != (view_b is None) or (
        view_a is not None and (view_a.ndim != 2 or view_a.shape != view_b.shape)  # type: ignore[union-attr]
    ):
        raise ValueError(
            "geometry needs view_a and view_b as two 2-D tensors of the same shape (or neither)."
        )
    out = dict.fromkeys(GEOMETRY_KEYS, _NAN)
    if view_a is not None and view_b is not None:
        out["align"] = alignment(view_a, view_b)
    x = _f64(emb)
    n = x.shape[0]
    if n == 0 or x.shape[1] == 0 or not _is_finite(x):
        return out
    u = F.normalize(x, dim=1)
    var = x.var(dim=0, correction=0)
    out["total_var"] = float(var.sum())
    out["nvar"] = float(u.var(dim=0, correction=0).sum())
    out["dead"] = dead_share(var)
    try:
        sigma = singular_values(x)
    except RuntimeError:  # LinAlgError: no convergence; a metric is NaN, the trial goes on
        sigma = None
    if sigma is not None:
        out["rankme"] = rankme(sigma)
        out["rank95"] = rank_at_mass(sigma, 0.95)
    out["uniform"] = uniformity(u)
    if n >= 2:
        out["std"] = float(u.std(dim=0).mean())
    if labels is not None:
        y = labels.detach().to(x.device).long()
        out["nc1"] = nc1(x, y)
        keep = y >= 0
        if bool(keep.any()):
            _, means, _ = _class_means(u[keep], y[keep])
            if means.shape[0] >= 2:
                out["class_cos"] = mean_abs_cos(means)
                out["class_cos_centered"] = mean_abs_cos(means - u[keep].mean(dim=0))
    return out


measure = geometry  # the family's entry point (bench.metrics)
