"""Reading a search-space YAML: `load_space(path)` and `parse_space(data)` -> validated `Space`.

The YAML loader reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`, and an lr grid silently
turning into strings is the most common sweep-file mistake). Validation runs in three steps,
each error one `ConfigError` sentence naming the file, the key and the value: the sections'
shape (`sections`), every grid point as a `TrialConfig` (`grid`: the config's own rules), then
the names the registries must know (`registries`: losses, their parameters, datasets,
backbones).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bench.config import ConfigError
from bench.space import registries
from bench.space.grid import grid_points
from bench.space.sections import Space, parse_sections


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float."""


_FLOAT = re.compile(
    r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$"
    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if re.fullmatch(r"[-+]?\d+", text):  # the resolver above also matches plain integers
        return int(text)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML document at `path`; a missing or unparsable file is a ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such search-space file.") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the file ({exc.strerror}).") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: cannot parse the YAML ({problem}).") from None


def load_space(path: str | Path) -> Space:
    """Read and validate a search-space YAML; every problem is a one-sentence ConfigError."""
    return parse_space(read_yaml(path), source=str(path), default_name=Path(path).stem)


def parse_space(data: Any, source: str = "search space", default_name: str = "sweep") -> Space:
    """Validate an already-parsed YAML document (a mapping) into a `Space`."""
    space = parse_sections(data, source, default_name)
    registries.check_names(space)  # losses, datasets, backbones: before building any config
    points = grid_points(space)  # every value, through TrialConfig's own rules
    registries.check_points(space, points)
    return space
