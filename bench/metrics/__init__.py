"""Evaluation metrics: pure tensor -> float functions (no training loop, no I/O).

* ``knn_accuracy``: weighted kNN top-1/top-5 (lightly's ``knn_predict``), ``knn.py``;
* ``train_probe``: linear probe and CLOA's FFN head on frozen features, ``probes.py``;
* ``geometry``: collapse metrics (total variance, RankMe, rank95, alignment, uniformity, NC1,
  class-mean cosines, std of normalised embeddings), ``geometry.py``.

Formulas and sources: ``reference/losses.md`` section 10. All accuracies are fractions in [0, 1].
"""

from bench.metrics.geometry import GEOMETRY_KEYS, geometry
from bench.metrics.knn import knn_accuracy
from bench.metrics.probes import train_probe

__all__ = ["GEOMETRY_KEYS", "geometry", "knn_accuracy", "train_probe"]
