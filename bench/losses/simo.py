"""SimO as its authors wrote it: three summed pair terms on a class-structured batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


def _pair_sum(e: Tensor, mask: Tensor, y: float, eps: float) -> Tensor:
    """Authors' ``combined_loss``: sum over the masked pairs of ``(1 + r)^(1 - 2y)``.

    ``r_ij = (e_i . e_j)^2 / (eps + ||e_i - e_j||^2)`` on the rows of ``e`` as given (unit rows
    for the embeddings, plain class means for the mean term), computed as
    ``exp((1 - 2y) * log1p(r))`` as in the authors' code.
    """
    g = e @ e.T
    sq = (e * e).sum(1)
    dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * g).clamp(min=0.0)
    r = g.square() / (eps + dist)
    return torch.where(mask, torch.exp((1.0 - 2.0 * y) * torch.log1p(r)), 0.0).sum()


@register_loss(
    "simo",
    uses_labels=True,
    paper="SimO, Bouhsine et al. 2024, arXiv:2410.05233",
    reference="mlnomadpy/exp_vis src/train.py combined_loss + simo2_loss_fn (authors' JAX code)",
    terms=("same", "diff", "means"),
)
class SimOLoss(nn.Module):
    """SimO as the authors' code trains it: same-class, cross-class and class-mean pair terms.

    With ``e`` the L2-normalised labelled embeddings and, for a pair, ``d = ||e_i - e_j||^2``,
    ``o = (e_i . e_j)^2``, ``r = o / (eps + d)`` and ``f_y = (1 + r)^(1 - 2y)`` (the authors'
    ``combined_loss``; ``y = 1`` pulls: ``1 / (1 + r)``, ``y = olean`` pushes towards
    orthogonality: ``(1 + r)^(1 - 2 olean)``)::

        same  = sum over classes c, pairs i < j within c             of f_1(e_i, e_j)
        diff  = sum over ranks k, pairs of classes a < b             of f_olean(e_a,k, e_b,k)
        means = sum over pairs of classes a < b                      of f_olean(m_a, m_b)
        L = same + diff + means

    ``e_c,k`` is the k-th embedding of class c in batch order and ``m_c`` the mean of class c's
    unit embeddings (not renormalised). That is the authors' ``simo2_loss_fn``: a batch of P
    classes x K samples reshaped to ``(P, K, dim)``; ``same`` runs ``combined_loss`` within each
    class, ``diff`` across classes at each within-class index (``transpose(1, 0, 2)``), ``means``
    on the class means. Sums, not means, as in the code.

    Here the batch is the harness's two views: with ``views=2`` (default) the embeddings are
    ``cat(z1, z2)`` with labels ``cat(y, y)``, so each class of a P x K batch holds 2K
    embeddings (the K view-1 embeddings, then the K view-2 ones) and ``same`` also pulls the two
    views of a sample together. ``views=1`` uses ``z1`` only: the authors' single-view batch
    (their pretraining applies no augmentation; use it with ``augment: none`` to reproduce it).
    The authors' batches are class-structured (P classes x K samples, drawn afresh each step):
    use ``batch_sampler: class`` with ``classes_per_batch: P``. Any other batch works too: the
    classes then have different sizes, ``diff`` pairs the k-th embeddings of two classes for
    each k that both have, and unlabelled samples (label -1) take no part in any term, so a
    batch without labels gives exactly 0. ``last_terms`` holds ``same``, ``diff``, ``means``.

    - [0] SimO, Bouhsine et al. 2024, arXiv:2410.05233 (ICLR 2025 submission, withdrawn): the
      paper's Eq. (1) could not be read, so the code is the specification.
    - [1] mlnomadpy/exp_vis ``src/train.py`` at 104181c (same code at 720a1cc, lines 25-186):
      ``combined_loss`` lines 173-203 (``epsilon=1/137`` line 173; the pair term line 200; sum
      line 202), ``simo2_loss_fn`` lines 211-227 (the three terms and their sum), unit
      embeddings line 429, ``orth_lean`` default 1/137 line 364 (and ``src/main.py`` line 37),
      ``embedding_size`` 16 line 360 (``src/main.py`` lines 35 and 65), P x K batches from
      ``create_simo2_batch_from_dataset`` lines 243-334 with K = ``samples_per_class`` 32
      (line 362) and P = min(batch // K, classes) (line 407).

    Differences to that code: the two views (above); the rank pairing and unequal class sizes
    generalise the reshape, which needs exactly P x K class-sorted rows; the class means of
    ``views=2`` average both views. Cost: a few 2B x 2B float32 buffers (fine up to batch ~2048).

    Args:
        eps: added to the squared distance in ``r``, > 0 (authors: 1/137).
        olean: orthogonality-leaning factor, the ``y`` of the push terms, in [0, 0.5)
            (authors' ``orth_lean``: 1/137).
        views: 2 = both views stacked (default), 1 = ``z1`` only.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64, -1 = unlabelled, or None.
    Returns a scalar.

    Example:
        >>> loss = SimOLoss()
        >>> z = torch.eye(2, 4).repeat_interleave(2, dim=0)  # classes 0, 0, 1, 1 on e_0, e_1
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> round(loss(z, z, y).item(), 4)  # same: 12 pairs at r = 137; diff: 4, means: 1 at r = 0
        5.087
    """

    def __init__(self, eps: float = 1 / 137, olean: float = 1 / 137, views: int = 2) -> None:
        super().__init__()
        self.eps = check_range("simo", "eps", eps, gt=0)
        self.olean = check_range("simo", "olean", olean, ge=0, lt=0.5)
        if views not in (1, 2) or isinstance(views, bool):
            raise ValueError(f"simo: views must be 1 or 2, got {views!r}.")
        self.views = int(views)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        b = z1.shape[0]
        z = torch.cat([z1, z2]) if self.views == 2 else z1
        if labels is None:
            labels = torch.full((b,), -1, dtype=torch.long, device=z1.device)
        y = torch.cat([labels, labels]) if self.views == 2 else labels
        e = F.normalize(z, dim=1)
        n = e.shape[0]
        labelled = y >= 0
        both = labelled.unsqueeze(0) & labelled.unsqueeze(1)
        same_class = (y.unsqueeze(0) == y.unsqueeze(1)) & both
        upper = torch.ones(n, n, dtype=torch.bool, device=e.device).triu(1)
        # rank = index of an embedding within its class, in batch order (the authors' k)
        rank = (same_class & upper.T).sum(1)
        same_rank = rank.unsqueeze(0) == rank.unsqueeze(1)
        other_class = both & ~same_class & upper
        same = _pair_sum(e, same_class & upper, 1.0, self.eps)
        diff = _pair_sum(e, other_class & same_rank, self.olean, self.eps)
        members = same_class.to(e.dtype)
        means = (members @ e) / members.sum(1, keepdim=True).clamp(min=1.0)
        first = rank == 0  # one row per class carries its mean
        mean_pairs = other_class & (first.unsqueeze(0) & first.unsqueeze(1))
        mean_term = _pair_sum(means, mean_pairs, self.olean, self.eps)
        self.last_terms = {
            "same": same.detach(),
            "diff": diff.detach(),
            "means": mean_term.detach(),
        }
        return same + diff + mean_term
