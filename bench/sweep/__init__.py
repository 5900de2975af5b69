"""The Ray layer: the only package that imports Ray (and, in `study`, Optuna).

- `session`: what the grid and the search share: the Ray session (environment, start or join,
  quiet logs, shutdown), what a trial asks Ray for, the Tuner, sweep metadata, end states,
  the final compaction of the store;
- `worker`: what runs in a Ray worker: the trainable of grid and search trials, their saved
  states;
- `callbacks`: the store callback and the progress line, driver side;
- `grid`: `bench sweep` (`run_sweep`); `search`: `bench tune` (`run_tune`);
- `study`: the Optuna study, its database, sampler and best trials (no Ray).

Nothing is imported here, so `import bench.sweep.study` (for `bench tune --dry-run`) does not
import Ray.
"""

from typing import Any

# Experiments started before the grid and the search shared their callbacks pickled them as
# `bench.sweep.StoreCallback` and `bench.sweep.ProgressCallback`; `--resume` unpickles them.
_MOVED = {"StoreCallback": "bench.sweep.callbacks", "ProgressCallback": "bench.sweep.callbacks"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'bench.sweep' has no attribute {name!r}")
