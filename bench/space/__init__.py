"""Search spaces: a YAML file -> a validated `Space` -> the sweep's trials, and the `search:`
section of `bench tune` -> a `TunePlan`. Pure: no Ray, no Optuna, and no torch at import.

Modules, in the order a YAML goes through them:
- `load`: reading the YAML (`1e-3` is a float) and `parse_space`, which runs the checks below;
- `sections`: the `Space` and the shape of each section (keys, run settings); `resources`: what
  a trial asks Ray for; `checks`: the two error sentences (unknown key, bad value) they all use;
- `grid`: every grid point as a `TrialConfig` (whose own rules check each value), the grouping
  of label fractions into trials, the sweep id, and `bench sweep --dry-run`'s text;
- `registries`: the only way in to the loss, dataset and backbone registries (imported when a
  check runs, so `import bench.space` never imports torch);
- `search`, `params` and `objective`: the `search:` section (its searched keys and their
  distributions, its objectives), the runs of a search trial and their scores, and the winner's
  sweep YAML.
"""

from bench.space.grid import Expansion, describe, expand, expansion_stats, grid_points, sweep_id
from bench.space.load import load_space, parse_space
from bench.space.resources import Resources
from bench.space.sections import Space

__all__ = [
    "Expansion",
    "Resources",
    "Space",
    "describe",
    "expand",
    "expansion_stats",
    "grid_points",
    "load_space",
    "parse_space",
    "sweep_id",
]
