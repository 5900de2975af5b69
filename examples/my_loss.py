"""A new loss in one file: InfoNCE plus a feature-decorrelation ("orthogonality") penalty.

Load it with `--plugin examples/my_loss.py` (bench losses, run, sweep, tune); nothing else in the
package changes. Importing the file registers the loss as `infonce_ortho`.

The idea (the hypothesis a researcher would tune): InfoNCE at large learning rates or small
batches collapses onto a few directions (dimensional collapse, CLOA section 3). Penalising the
off-diagonal of the embedding dimensions' correlation matrix pushes the dimensions towards
orthogonality and should keep the embedding full-rank. The penalty is the covariance term of
VICReg applied to correlations, as studied by Hua et al. 2021, "On Feature Decorrelation in
Self-Supervised Learning", arXiv:2105.00470:

    L = InfoNCE(z1, z2; temperature) + ortho_weight * (1/d) sum_{i != j} C_ij^2,
    C = corr(cat(z1, z2))  (d x d, over the 2B embeddings of the batch)

InfoNCE here is the NT-Xent of `bench.losses.infonce` (lightly's `NTXentLoss`), written out so
the file stands alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses import check_range, checked_forward, register_loss


@register_loss(
    "infonce_ortho",
    uses_labels=False,
    paper="SimCLR (arXiv:2002.05709) + feature decorrelation (Hua et al. 2021, arXiv:2105.00470)",
    reference="lightly NTXentLoss + the off-diagonal term of lightly VICRegLoss",
    terms=("infonce", "ortho"),
)
class InfoNCEOrtho(nn.Module):
    """InfoNCE plus `ortho_weight` times the mean squared off-diagonal correlation.

    Args:
        temperature: softmax temperature of InfoNCE, > 0.
        ortho_weight: weight of the decorrelation penalty, >= 0 (0 is plain InfoNCE).

    Shapes: `z1, z2`: `(B, d)`; `labels` ignored. Returns a scalar; `last_terms` holds both terms
    (stored as `m_loss_infonce` and `m_loss_ortho`).
    """

    def __init__(self, temperature: float = 0.5, ortho_weight: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_range("infonce_ortho", "temperature", temperature, gt=0)
        self.ortho_weight = check_range("infonce_ortho", "ortho_weight", ortho_weight, ge=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        b = z1.shape[0]
        z = torch.cat([z1, z2])
        u = F.normalize(z, dim=1)
        logits = u @ u.T / self.temperature
        logits.fill_diagonal_(float("-inf"))  # an embedding is not its own negative
        positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
        infonce = F.cross_entropy(logits, positives)
        # Correlation over the batch; eps keeps a collapsed (zero-variance) dimension finite.
        zc = (z - z.mean(0)) / (z.std(0) + 1e-4)
        corr = zc.T @ zc / (z.shape[0] - 1)
        off = corr - torch.diag_embed(torch.diagonal(corr))
        ortho = off.pow(2).sum() / z.shape[1]
        self.last_terms = {"infonce": infonce.detach(), "ortho": ortho.detach()}
        return infonce + self.ortho_weight * ortho
