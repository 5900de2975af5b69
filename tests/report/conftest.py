"""Fixtures of the report tests: the golden store (tests/report/data, made by make_golden.py)
and hand-built cell frames for the scoring functions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import GOLDEN


@pytest.fixture(scope="session")
def golden_rows() -> pd.DataFrame:
    """The golden store as `bench report` reads it (metrics kept in m_extra expanded)."""
    from bench.store import expand_extra, read_results

    return expand_extra(read_results(GOLDEN)).drop(columns=["m_extra"], errors="ignore")


@pytest.fixture()
def golden_copy(tmp_path: Path) -> Path:
    """A writable copy of the golden store."""
    dst = tmp_path / "store"
    shutil.copytree(GOLDEN, dst)
    return dst
