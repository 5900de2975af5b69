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

# Experiments started before bench/sweep.py became this package pickled its objects under the
# names below (the callbacks, the trial-directory namer, the trainable's runtime); `--resume`
# unpickles them, so the old names still lead to the new homes.
_MOVED = {
    "StoreCallback": ("bench.sweep.callbacks", "StoreCallback"),
    "ProgressCallback": ("bench.sweep.callbacks", "ProgressCallback"),
    "trial_dirname": ("bench.sweep.session", "trial_dirname"),
    "PerTrialResources": ("bench.sweep.session", "PerTrialResources"),
    "bench_trial": ("bench.sweep.worker", "bench_trial"),
    "_Runtime": ("bench.sweep.worker", "Runtime"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        module, attribute = _MOVED[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'bench.sweep' has no attribute {name!r}")
