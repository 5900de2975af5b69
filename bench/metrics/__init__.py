"""Evaluation metrics, one module per family, declared so that the store needs no torch.

A family is one module of this package that says what it reports in a module-level literal
`FAMILY` and computes it from frozen features:

    FAMILY = {
        "scope": "embedding",   # columns m_h_<key> (backbone) and m_z_<key> (projection)
        "keys": ("total_var", "rankme", ...),
    }
    def measure(emb, labels, view_a, view_b) -> dict[str, float]: ...   # one value per key

    FAMILY = {
        "scope": "accuracy",    # columns m_<key> (test split) and m_val_<key> (validation)
        "keys": ("knn_top1", "knn_top5"),
        "final_only": False,    # True: computed at the final epoch only
        "needs": None,          # a config key that turns the family off when it is 0
    }
    def scores(bank, bank_y, queries, num_classes, cfg) -> dict[str, float]: ...
        # queries: {column prefix ("m_", "m_val_"): (features, labels)}; keys prefix + key

Built in: `knn` (weighted kNN, every evaluation), `probes` (linear probe and CLOA's FFN head,
final epoch), `geometry` (collapse metrics of the embedding). `bench.evaluation` imports every
family and calls it; the store's schema and the report read the declarations with `declared()`,
which parses each module's `FAMILY` literal instead of importing the module (the families
import torch; the store and the report never do). Adding a family is one new file here.
Formulas and sources are in each module. All accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import ast
import pkgutil
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

SCOPES = ("accuracy", "embedding")
SPLIT_PREFIXES = ("m_", "m_val_")  # accuracy columns: test split, validation hold-out
SPACE_PREFIXES = ("m_h_", "m_z_")  # embedding columns: backbone features, projections


@dataclass(frozen=True)
class Family:
    """The declaration of one metric module (`module` is its name in this package)."""

    module: str
    scope: str
    keys: tuple[str, ...]
    final_only: bool = False
    needs: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Its store columns: per split (accuracy) or per embedding (geometry), key order."""
        prefixes = SPLIT_PREFIXES if self.scope == "accuracy" else SPACE_PREFIXES
        return tuple(p + k for p in prefixes for k in self.keys)

    def is_on(self, cfg: Any) -> bool:
        """Whether a trial of `cfg` computes it (its `needs` config key is not 0)."""
        return self.needs is None or bool(getattr(cfg, self.needs))


@cache
def declared() -> tuple[Family, ...]:
    """Every family of this package, by module name, read from its source (not imported)."""
    out = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        text = resources.files(__name__).joinpath(f"{info.name}.py").read_text()
        spec = _family_literal(text, info.name)
        if spec is not None:
            out.append(_family(info.name, spec))
    return tuple(out)


def _family_literal(source: str, module: str) -> dict[str, Any] | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "FAMILY" for t in targets):
            try:
                spec = ast.literal_eval(value)
            except ValueError:
                raise TypeError(
                    f"bench.metrics.{module}: FAMILY must be a literal dict (it is "
                    "read without importing the module)."
                ) from None
            if not isinstance(spec, dict):
                raise TypeError(f"bench.metrics.{module}: FAMILY must be a dict.")
            return spec
    return None


def _family(module: str, spec: dict[str, Any]) -> Family:
    unknown = sorted(set(spec) - {"scope", "keys", "final_only", "needs"})
    keys = spec.get("keys")
    if unknown or spec.get("scope") not in SCOPES or not isinstance(keys, tuple) or not keys:
        raise TypeError(
            f"bench.metrics.{module}: FAMILY needs a 'scope' in {SCOPES} and a "
            f"non-empty tuple of 'keys' (unknown entries: {unknown or 'none'})."
        )
    return Family(
        module, spec["scope"], keys, bool(spec.get("final_only", False)), spec.get("needs")
    )


def families(scope: str) -> tuple[Family, ...]:
    return tuple(f for f in declared() if f.scope == scope)


def columns(scope: str) -> tuple[str, ...]:
    """The store columns of every family of `scope`: all test then all validation columns
    (accuracy), all backbone then all projection columns (embedding)."""
    prefixes = SPLIT_PREFIXES if scope == "accuracy" else SPACE_PREFIXES
    return tuple(p + k for p in prefixes for f in families(scope) for k in f.keys)
