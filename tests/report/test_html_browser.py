"""index.html in headless Chromium (Debian's `chromium`, installed here when missing).

Driven over the DevTools protocol pipe (chromium_cdp.py): no chromedriver, no extra packages.
The page shows two hostile loss names a plugin could choose: `<script>alert(1)</script>` (must
be text, never run) and `in$fo` (a `$` must not break matplotlib's mathtext).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from chromium_cdp import Browser

from bench.report.render import render_report

pytestmark = pytest.mark.browser
EVIL = "<script>alert(1)</script>"
OLD_STORE = ["m_val_knn_top1", "m_val_linear_top1", "m_val_linear_top5", "m_h_nvar", "m_h_dead",
             "m_num_classes"]
BOARD = "#leaderboard-digits"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Chromium; installs Debian's package (as root, like CI) when it is missing."""
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=900, env=env)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"chromium is missing and could not be installed: {err}")
    return CHROMIUM


@pytest.fixture(scope="module")
def page(chromium: str, golden_rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    rows = golden_rows.copy()
    rows.loc[rows["loss"] == "vicreg", ["loss", "base_loss"]] = EVIL
    for col in ("loss", "base_loss"):
        rows[col] = rows[col].str.replace("infonce", "in$fo", regex=False)
    root = tmp_path_factory.mktemp("browser")
    out = render_report(rows, root / "report")
    old = render_report(golden_rows.drop(columns=OLD_STORE), root / "old", figures=False)
    browser = Browser(chromium, root / "profile")
    try:
        browser.open((out / "index.html").resolve().as_uri())
        yield browser, out, old
    finally:
        browser.close()


def test_page_loads_without_errors_or_dialogs(page) -> None:
    browser, *_ = page
    assert browser.evaluate("document.title").startswith("Stability report: golden")
    assert browser.errors() == []
    assert not [e for e in browser.events if e["method"] == "Page.javascriptDialogOpening"]


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def test_plots_render(page) -> None:
    browser, out, _ = page
    widths = browser.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 6 and all(w > 100 for w in widths)
    browser.evaluate("document.getElementById('fig-accuracy_vs_lr-digits').scrollIntoView()")
    shot = browser.screenshot()
    (out.parent / "screenshot-figures.png").write_bytes(shot)
    pixels = _pixels(shot)
    assert pixels.std() > 20  # a blank or failed image is flat
    assert (pixels < 128).mean() > 0.005  # lines and text drawn, not only light fills


def _column(browser: Browser, index: int) -> list[str]:
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('{BOARD} tbody tr'))"
        f".map(r => r.cells[{index}].getAttribute('data-v'))")


def test_leaderboard_sorts_on_header_click(page) -> None:
    browser, *_ = page
    heads = browser.evaluate(
        f"Array.from(document.querySelectorAll('{BOARD} th')).map(h => h.textContent)")
    col = heads.index("best (val-selected test)")
    before = [float(v) for v in _column(browser, col)]
    assert before != sorted(before)  # rank order is not best order in the golden sweep
    click = f"document.querySelectorAll('{BOARD} th')[{col}].click()"
    browser.evaluate(click)
    assert [float(v) for v in _column(browser, col)] == sorted(before)
    browser.evaluate(click)
    assert [float(v) for v in _column(browser, col)] == sorted(before, reverse=True)
    name = heads.index("loss")
    browser.evaluate(f"document.querySelectorAll('{BOARD} th')[{name}].click()")
    names = _column(browser, name)
    assert names == sorted(names)


def test_hostile_loss_name_shows_as_text(page) -> None:
    browser, *_ = page
    text = browser.evaluate("document.getElementById('leaderboard-digits').innerText")
    assert EVIL in text and "in$fo" in text
    assert browser.evaluate("document.scripts.length") == 1  # only the page's own script
    assert browser.evaluate("typeof window.alert") == "function"


def test_page_opens_on_the_leaderboard_and_headline_figure(page) -> None:
    """The top of the page (kept beside the report for a person to look at): the leaderboard
    and the headline figure come before the comparison tables; completeness is last."""
    browser, out, _ = page
    browser.evaluate("window.scrollTo(0, 0)")
    shot = browser.screenshot()
    (out.parent / "screenshot-top.png").write_bytes(shot)
    assert _pixels(shot).std() > 20
    tops = browser.evaluate(
        "['leaderboard-digits', 'fig-score_vs_lr-digits', 'tables', 'completeness']"
        ".map(i => document.getElementById(i).getBoundingClientRect().top)")
    assert tops == sorted(tops) and tops[0] < 1800  # the leaderboard is on the first screen


def test_store_without_validation_shows_the_banner(page) -> None:
    browser, _, old = page
    browser.open((old / "index.html").resolve().as_uri())
    try:
        banner = browser.evaluate("document.querySelector('.banner').innerText")
        box = browser.evaluate("document.querySelector('.banner').getBoundingClientRect().top")
        assert banner.startswith("Warning: Selection used test data") and box < 400
        (old.parent / "screenshot-banner.png").write_bytes(browser.screenshot())
    finally:
        browser.open((old.parent / "report" / "index.html").resolve().as_uri())
