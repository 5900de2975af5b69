"""Results store (bench/store): schema, rows, fragments, compaction, reading, dedup, summary.

Fast and Ray-free: rows come from `tests/synthetic_results.py` through the real `make_rows`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from synthetic_results import PROVENANCE, synthetic_rows, synthetic_trials

from bench.cli import main
from bench.config import TrialConfig
from bench.store import (
    METRIC_COLUMNS,
    SCHEMA,
    FragmentWriter,
    StoreError,
    StoreWarning,
    expand_extra,
    format_summary,
    make_rows,
    provenance,
    read_results,
    read_sweep_meta,
    resolve_storage,
    summarize,
    write_sweep_meta,
)

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def prov(minutes: float = 0) -> dict:
    return {**PROVENANCE, "started_at": T0, "written_at": T0 + timedelta(minutes=minutes)}


def write_sweep(writer: FragmentWriter, trials, attempt: int = 0, minutes: float = 0) -> int:
    """Write like the sweep callback: one fragment per (trial, epoch). Returns rows written."""
    n = 0
    for cfg, records in trials:
        for epoch in sorted({r["epoch"] for r in records}):
            batch = [r for r in records if r["epoch"] == epoch]
            writer.write_records(batch, cfg=cfg, attempt=attempt, provenance=prov(minutes))
            n += len(batch)
    return n


@pytest.fixture
def trials():
    # infonce (no labels): one trial at both fractions; cloa+infonce: one trial per fraction.
    return synthetic_trials(
        None, 4, losses=("infonce", "cloa+infonce"), lrs=(0.01, 3.0), batch_sizes=(64,),
        label_fractions=(0.1, 1.0), seeds=(0,),
    )  # fmt: skip


def fragment_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("fragments/**/*")
        if p.suffix in (".arrow", ".parquet") and not p.name.startswith(".")
    )


def rows_in(path: Path) -> int:
    if path.suffix == ".arrow":  # an Arrow IPC fragment
        return pa.ipc.open_file(pa.OSFile(str(path))).read_all().num_rows
    return pq.read_metadata(path).num_rows


# --- schema and rows ---------------------------------------------------------------------------


def test_schema_has_a_typed_column_for_every_config_field_and_metric():
    for field in dataclasses.fields(TrialConfig):
        assert SCHEMA.get_field_index(f"p_{field.name}") >= 0, field.name
    types = {f.name: f.type for f in SCHEMA}
    assert types["p_lr"] == pa.float64() and types["p_epochs"] == pa.int64()
    assert types["p_download"] == pa.bool_() and types["p_label_fractions"] == pa.string()
    assert types["p_pretrain_label_fraction"] == pa.float64()
    assert types["attempt"] == pa.int32() and types["epoch"] == pa.int32()
    assert types["started_at"] == pa.timestamp("us", tz="UTC")
    assert all(types[m] == pa.float64() for m in METRIC_COLUMNS)
    assert {"m_h_rankme", "m_z_class_cos_centered", "m_loss_covariance", "m_ffn_top5"} <= set(
        METRIC_COLUMNS
    )
    assert len(set(SCHEMA.names)) == len(SCHEMA.names)


def test_make_rows_identity_params_as_json_and_unknown_metrics_in_extra():
    cfg = TrialConfig(
        loss="cloa+infonce", label_fractions=(0.1, 0.5), loss_params={"temperature": 0.5}
    )
    records = [
        {"epoch": 3, "step": 30, "time_s": 1.5, "label_fraction": f, "status": "running",
         "m_knn_top1": 0.5, "m_loss": float("nan"), "m_myloss_term": 2, "training_iteration": 3}
        for f in (0.1, 0.5)
    ]  # fmt: skip
    rows = make_rows(
        records, sweep_id="s", cfg=cfg, attempt=1, provenance=prov(), study="st"
    ).to_pylist()
    row = rows[0]
    assert (row["loss"], row["base_loss"], row["addon"]) == ("cloa+infonce", "infonce", "cloa")
    assert row["p_label_fractions"] == "[0.1, 0.5]"
    assert row["p_loss_params"] == '{"temperature": 0.5}'
    assert row["p_ffn_hidden"] is None and row["attempt"] == 1 and row["study"] == "st"
    assert row["trial_id"] == cfg.trial_id() and row["final"] is False
    assert json.loads(row["m_extra"]) == {"m_myloss_term": 2.0}
    assert math.isnan(row["m_loss"]) and row["m_linear_top1"] is None
    assert row["started_at"] == T0
    plain = make_rows(
        records[:1], sweep_id="s", cfg=TrialConfig(loss="vicreg"), attempt=0, provenance={}
    )
    assert (
        plain.column("addon").to_pylist() == [None]
        and plain.column("written_at")[0].as_py() is not None
    )


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"epoch": 1, "status": "running"}, "'label_fraction'"),
        ({"epoch": 1, "label_fraction": 1.0, "status": "crashed"}, "'crashed'"),
        ({"epoch": "one", "label_fraction": 1.0, "status": "done"}, "'epoch'"),
        ({"epoch": 1, "label_fraction": 1.0, "status": "done", "m_weird": "x"}, "'m_weird'"),
    ],
)
def test_make_rows_rejects_bad_records_naming_the_key(record, match):
    with pytest.raises(StoreError, match=match):
        make_rows([record], sweep_id="s", cfg=TrialConfig(), attempt=0, provenance={})


def test_make_rows_rejects_unknown_provenance_key():
    with pytest.raises(StoreError, match="'gpu'"):
        make_rows([], sweep_id="s", cfg=TrialConfig(), attempt=0, provenance={"gpu": "x"})


def test_provenance_reads_versions_without_importing_torch_or_ray():
    info = provenance()
    assert {"git_sha", "bench_version", "torch_version", "ray_version", "hostname"} <= set(info)
    assert info["git_sha"] and info["hostname"]
    code = "import sys, bench.store as s; s.provenance(); print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- writing and reading -----------------------------------------------------------------------


def test_round_trip_one_fragment_per_result(tmp_path, trials):
    with FragmentWriter(tmp_path, "sweep1") as writer:
        n = write_sweep(writer, trials)
    epochs = {r["epoch"] for _, recs in trials for r in recs}
    assert len(fragment_files(tmp_path)) == sum(
        len({r["epoch"] for r in recs}) for _, recs in trials
    )
    df = read_results(tmp_path)
    assert len(df) == n and list(df.columns) == SCHEMA.names
    assert set(df["epoch"]) == epochs
    expected = sorted(
        (cfg.trial_id(), r["epoch"], r["label_fraction"], r["m_knn_top1"])
        for cfg, recs in trials
        for r in recs
    )
    got = sorted(zip(df["trial_id"], df["epoch"], df["label_fraction"], df["m_knn_top1"]))
    assert got == expected
    keys = ["sweep_id", "loss", "trial_id", "label_fraction", "epoch"]
    assert df[keys].equals(df.sort_values(keys)[keys].reset_index(drop=True))
    assert df["started_at"].dt.tz is not None


def test_reading_selected_columns_keeps_the_keys(tmp_path, trials):
    n = write_sweep(FragmentWriter(tmp_path, "s"), trials)
    df = read_results(tmp_path, columns=["m_knn_top1", "p_lr"])
    assert len(df) == n and {"m_knn_top1", "p_lr", "trial_id", "epoch", "attempt"} <= set(df)
    assert "m_h_rankme" not in df
    with pytest.raises(StoreError, match="'m_nope'"):
        read_results(tmp_path, columns=["m_nope"])


def test_synthetic_rows_match_what_the_store_reads_back(tmp_path):
    expected = synthetic_rows(
        None, 3, losses=("vicreg",), lrs=(0.1,), batch_sizes=(32,), seeds=(0, 1)
    )
    writer = FragmentWriter(tmp_path, "synthetic")
    writer.write(pa.Table.from_pandas(expected, schema=SCHEMA, preserve_index=False))
    pd.testing.assert_frame_equal(read_results(tmp_path), expected)


def test_dedup_keeps_highest_attempt_then_latest_write(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    for rec in records:  # attempt 0 reaches every epoch
        writer.write_records([rec], cfg=cfg, attempt=0, provenance=prov(0))
    retried = [dict(r, m_knn_top1=0.77) for r in records if r["epoch"] >= 3]
    writer.write_records(retried, cfg=cfg, attempt=1, provenance=prov(1))  # resumed after epoch 2
    rewritten = [dict(r, m_knn_top1=0.88) for r in records if r["epoch"] == 4]
    writer.write_records(rewritten, cfg=cfg, attempt=1, provenance=prov(2))  # driver re-wrote it
    df = read_results(tmp_path)
    assert not df.duplicated(["trial_id", "epoch", "label_fraction"]).any()
    assert len(df) == len(records)
    by_epoch = df.groupby("epoch")["m_knn_top1"].first()
    assert by_epoch[4] == 0.88 and by_epoch[3] == 0.77
    assert set(df.loc[df["epoch"] <= 2, "attempt"]) == {0}


@pytest.mark.parametrize("packed", [True, False])
def test_dedup_matches_a_pandas_reference_on_random_versions(monkeypatch, packed):
    from bench.store import dedup as dedup_module

    if not packed:  # the path for keys too large to pack into one int64
        monkeypatch.setattr(dedup_module, "_combine", lambda *codes: None)
    rng = np.random.default_rng(0)
    n = 3000
    trial = rng.integers(0, 40, n)
    frame = pd.DataFrame({
        "sweep_id": np.where(trial % 3 == 0, "b", "a"), "trial_id": [f"t{t:02d}" for t in trial],
        "loss": [["vicreg", "infonce", "cloa+dcl", "simo"][t % 4] for t in trial],
        "epoch": rng.integers(1, 12, n).astype("int32"), "label_fraction": rng.choice([0.1, 1.0], n),
        "attempt": rng.integers(0, 3, n).astype("int32"),
        "written_at": pd.to_datetime(rng.integers(0, 10**6, n), unit="s", utc=True),
    })  # fmt: skip
    got = frame.iloc[dedup_module.dedup_indices(pa.Table.from_pandas(frame))].reset_index(drop=True)
    keys = ["sweep_id", "trial_id", "label_fraction", "epoch"]
    ref = frame.sort_values([*keys, "attempt", "written_at"], ascending=[True] * 4 + [False] * 2)
    ref = ref.drop_duplicates(keys)
    newest = ref.groupby(["sweep_id", "trial_id"])["attempt"].transform("max")
    reach = (
        ref["epoch"]
        .where(ref["attempt"] == newest)
        .groupby([ref["sweep_id"], ref["trial_id"]])
        .transform("max")
    )
    ref = ref[(ref["attempt"] == newest) | (ref["epoch"] <= reach)]
    ref = ref.sort_values(["sweep_id", "loss", "trial_id", "label_fraction", "epoch"]).reset_index(
        drop=True
    )
    assert len(got) < n and ref["attempt"].nunique() == 3
    pd.testing.assert_frame_equal(got, ref)


def test_rows_of_a_superseded_attempt_beyond_the_retry_are_dropped(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    writer.write_records(records, cfg=cfg, attempt=0, provenance=prov(0))  # epochs 1..4
    retry = [dict(r, status="diverged", final=True) for r in records if r["epoch"] == 2]
    writer.write_records(retry, cfg=cfg, attempt=1, provenance=prov(1))  # retry ended at 2
    df = read_results(tmp_path)
    assert df["epoch"].max() == 2
    assert set(df.loc[df["epoch"] == 2, "status"]) == {"diverged"}


def test_truncated_fragment_is_skipped_with_a_warning_naming_it(tmp_path, trials):
    writer = FragmentWriter(tmp_path, "s")
    n = write_sweep(writer, trials)
    victim = fragment_files(tmp_path)[0]
    lost = rows_in(victim)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.warns(StoreWarning, match=str(victim)):
        df = read_results(tmp_path)
    assert len(df) == n - lost


def test_results_command_reports_a_skipped_file_as_one_line(tmp_path, trials, capsys):
    write_sweep(FragmentWriter(tmp_path, "s"), trials)
    victim = fragment_files(tmp_path)[-1]
    victim.write_bytes(b"PAR1")
    assert main(["results", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"bench: warning: skipping unreadable results file {victim}")


def test_temporary_files_are_invisible_to_readers(tmp_path, trials):
    writer = FragmentWriter(tmp_path, "s")
    n = write_sweep(writer, trials[:1])
    frag_dir = fragment_files(tmp_path)[0].parent
    (frag_dir / ".tmp-abc-00001-0-deadbeef.parquet").write_bytes(b"half a file")
    (tmp_path / "s" / "trials").mkdir()
    (tmp_path / "s" / "trials" / ".tmp-x.parquet").write_bytes(b"PAR1 garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        assert len(read_results(tmp_path)) == n


def test_schema_evolution_missing_columns_read_as_null_extra_columns_ignored(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    writer.write_records(records[:1], cfg=cfg, attempt=0, provenance=prov())
    old = make_rows(records[1:2], sweep_id="s", cfg=cfg, attempt=0, provenance=prov())
    old = old.drop_columns(["m_knn_top1", "study", "m_extra"]).append_column(
        "m_retired", pa.array([1.0])
    )
    old = old.set_column(
        old.schema.get_field_index("epoch"), "epoch", old.column("epoch").cast(pa.int64())
    )
    pq.write_table(old, fragment_files(tmp_path)[0].parent / "00099-0-0ldschema.parquet")
    df = read_results(tmp_path)
    assert len(df) == 2 and "m_retired" not in df
    assert df["m_knn_top1"].isna().sum() == 1 and df["epoch"].dtype == "int32"


def test_fragment_with_an_uncastable_column_is_skipped_with_a_warning(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    writer.write_records(records[:1], cfg=cfg, attempt=0, provenance=prov())
    bad = make_rows(records[1:2], sweep_id="s", cfg=cfg, attempt=0, provenance=prov())
    bad = bad.set_column(bad.schema.get_field_index("m_knn_top1"), "m_knn_top1", pa.array(["high"]))
    victim = fragment_files(tmp_path)[0].parent / "00002-0-badtype0.parquet"
    pq.write_table(bad, victim)
    with pytest.warns(StoreWarning, match=str(victim)):
        df = read_results(tmp_path)
    assert len(df) == 1


def test_compaction_merges_deletes_fragments_and_is_idempotent(tmp_path, trials):
    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    before = read_results(tmp_path)
    for cfg, _ in trials:
        path = writer.compact(cfg.trial_id())
        assert path.endswith(f"trials/{cfg.trial_id()}.parquet")
    assert fragment_files(tmp_path) == []
    assert list((tmp_path / "s" / "fragments").iterdir()) == []
    assert len(list((tmp_path / "s" / "trials").glob("*.parquet"))) == len(trials)
    pd.testing.assert_frame_equal(read_results(tmp_path), before)
    assert writer.compact(trials[0][0].trial_id()).endswith(".parquet")  # again: no change
    assert writer.compact("neverwritten") is None
    pd.testing.assert_frame_equal(read_results(tmp_path), before)


def test_compact_all_compacts_every_trial_with_fragments(tmp_path, trials):
    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    before = read_results(tmp_path)
    writer.compact(trials[0][0].trial_id())
    paths = FragmentWriter(tmp_path, "s").compact_all()  # e.g. a new driver after a crash
    assert len(paths) == len(trials) - 1 and fragment_files(tmp_path) == []
    pd.testing.assert_frame_equal(read_results(tmp_path), before)
    cfg, records = trials[-1]  # the first writer still works though its directories are gone
    writer.write_records(records[-1:], cfg=cfg, attempt=1, provenance=prov(9))
    assert len(read_results(tmp_path)) == len(before)


def test_compact_sweep_merges_trials_into_one_file_and_keeps_later_results(tmp_path, trials):
    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    before = read_results(tmp_path)
    merged = Path(writer.compact_sweep())
    assert merged.parent.name == "merged" and list(tmp_path.rglob("*.parquet")) == [merged]
    pd.testing.assert_frame_equal(read_results(tmp_path), before)
    assert writer.compact_sweep() == str(merged)  # idempotent
    cfg, records = trials[0]
    writer.write_records(
        [dict(records[-1], m_knn_top1=0.99)], cfg=cfg, attempt=1, provenance=prov(9)
    )
    writer.compact(cfg.trial_id())  # a late result: its trial file sits beside the merged one
    df = read_results(tmp_path)
    assert len(df) == len(before) and (df["m_knn_top1"] == 0.99).sum() == 1
    again = Path(writer.compact_sweep())
    assert list(tmp_path.rglob("*.parquet")) == [again] and again != merged
    pd.testing.assert_frame_equal(read_results(tmp_path), df)


def count_dedups(monkeypatch) -> list[int]:
    """Counts calls of the dedup computation (skipped for files compaction marked sorted)."""
    from bench.store import dedup as dedup_module

    calls: list[int] = []
    real = dedup_module.dedup_indices

    def counted(table):
        calls.append(table.num_rows)
        return real(table)

    monkeypatch.setattr(dedup_module, "dedup_indices", counted)
    return calls


def test_compacted_files_are_marked_sorted_and_read_without_dedup(tmp_path, trials, monkeypatch):
    from bench.store.dedup import SORTED, span

    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    before = read_results(tmp_path)
    paths = [writer.compact(cfg.trial_id()) for cfg, _ in trials]
    meta = json.loads(pq.read_schema(paths[0]).metadata[SORTED])
    assert meta == {"sweep_id": "s", "trial_id": trials[0][0].trial_id()}
    calls = count_dedups(monkeypatch)
    pd.testing.assert_frame_equal(read_results(tmp_path), before)  # disjoint trial files
    merged = writer.compact_sweep()  # their concatenation is sorted: a read and a write
    assert calls == []
    assert json.loads(pq.read_schema(merged).metadata[SORTED]) == {
        "sweep_id": "s", "trial_id": None,
    }  # fmt: skip
    pd.testing.assert_frame_equal(read_results(tmp_path), before)
    assert calls == []
    cfg, records = trials[0]  # a late result beside the merged file: versions may overlap
    writer.write_records([dict(records[-1], m_knn_top1=0.99)], cfg=cfg, attempt=1,
                         provenance=prov(9))  # fmt: skip
    df = read_results(tmp_path)
    assert len(calls) == 1 and len(df) == len(before) and (df["m_knn_top1"] == 0.99).sum() == 1
    writer.compact(cfg.trial_id())
    assert len(read_results(tmp_path)) == len(before) and len(calls) == 3  # + compact's own
    assert span(pa.table({"x": [1]}).replace_schema_metadata({SORTED: b"not json"})) is None


def test_spans_that_may_hold_one_result_twice_are_not_disjoint():
    from bench.store.dedup import disjoint

    assert disjoint([("a", "t1"), ("a", "t2"), ("b", None)])
    assert not disjoint([("a", "t1"), ("a", "t1")])
    assert not disjoint([("a", None), ("a", "t1")]) and not disjoint([("a", "t1"), ("a", None)])
    assert disjoint([(None, None)]) and not disjoint([(None, None), ("b", None)])


def test_a_big_merged_file_reads_the_same_through_the_parallel_path(tmp_path, trials, monkeypatch):
    from bench.store import reader

    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    cfg, records = trials[0]
    writer.write_records([dict(records[0], m_plugin_term=1.5)], cfg=cfg, attempt=1,
                         provenance=prov(1))  # fmt: skip
    writer.compact_sweep()
    small = read_results(tmp_path)
    monkeypatch.setattr(reader, "_BIG_FILE_ROWS", 1)  # every file counts as big
    big = read_results(tmp_path)
    pd.testing.assert_frame_equal(big, small)
    assert big["m_extra"].notna().sum() == 1 and str(big["loss"].dtype) == str(small["loss"].dtype)


def test_fragments_are_arrow_files_and_parquet_fragments_still_read(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    epochs = sorted({r["epoch"] for r in records})
    writer.write_records([r for r in records if r["epoch"] == epochs[0]], cfg=cfg, attempt=0,
                         provenance=prov())  # fmt: skip
    (fragment,) = fragment_files(tmp_path)
    assert fragment.suffix == ".arrow" and pa.ipc.open_file(pa.OSFile(str(fragment))).num_record_batches
    older = make_rows([r for r in records if r["epoch"] == epochs[1]], sweep_id="s", cfg=cfg,
                      attempt=0, provenance=prov())  # fmt: skip
    pq.write_table(older, fragment.parent / f"{epochs[1]:05d}-0-0ldparq0.parquet")  # earlier
    expected = sum(r["epoch"] in epochs[:2] for r in records)
    assert len(read_results(tmp_path)) == expected
    writer.compact(cfg.trial_id())
    assert fragment_files(tmp_path) == [] and len(read_results(tmp_path)) == expected


def test_cached_trial_columns_follow_attempt_provenance_and_config(tmp_path, trials):
    cfg, records = trials[0]
    first = [r for r in records if r["epoch"] == 1]
    writer = FragmentWriter(tmp_path, "s")
    writer.write_records(first, cfg=cfg, attempt=0, provenance={**prov(0), "device_name": "a"})
    writer.write_records(first, cfg=cfg, attempt=1, provenance={**prov(1), "device_name": "b"})
    other = dataclasses.replace(cfg, lr=cfg.lr * 10)
    writer.write_records(first, cfg=other, attempt=0, provenance=prov(2))
    df = read_results(tmp_path)
    mine = df[df["trial_id"] == cfg.trial_id()]
    assert set(mine["attempt"]) == {1} and set(mine["device_name"]) == {"b"}
    theirs = df[df["trial_id"] == other.trial_id()]
    assert len(theirs) == len(first) and set(theirs["p_lr"]) == {cfg.lr * 10}
    rows = make_rows(first, sweep_id="s", cfg=cfg, attempt=0, provenance={"device_name": "c"})
    assert set(rows.column("device_name").to_pylist()) == {"c"}
    assert rows.column("written_at").null_count == 0


def test_compact_sweep_keeps_a_trial_file_rewritten_while_merging(tmp_path, trials, monkeypatch):
    from bench.store import writer as writer_module

    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, trials)
    for cfg, _ in trials:
        writer.compact(cfg.trial_id())
    cfg, records = trials[0]
    real_read = writer_module.read_tables

    def read_then_recompact(fs, paths, columns=None):
        out = real_read(fs, paths, columns)
        monkeypatch.setattr(writer_module, "read_tables", real_read)  # inject once
        late = [dict(records[-1], m_knn_top1=0.99)]  # the driver re-compacts trial 0 meanwhile
        writer.write_records(late, cfg=cfg, attempt=1, provenance=prov(9))
        writer.compact(cfg.trial_id())
        return out

    monkeypatch.setattr(writer_module, "read_tables", read_then_recompact)
    writer.compact_sweep()
    assert (tmp_path / "s" / "trials" / f"{cfg.trial_id()}.parquet").exists()
    assert (read_results(tmp_path)["m_knn_top1"] == 0.99).sum() == 1


def test_compaction_crash_between_publish_and_delete_leaves_no_duplicates(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, [(cfg, records)])
    saved = {p: p.read_bytes() for p in fragment_files(tmp_path)}
    writer.compact(cfg.trial_id())
    for path, data in saved.items():  # as if the process died before deleting fragments
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    stale = next(iter(saved)).parent / ".tmp-crashed.parquet"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    young = next(iter(saved)).parent / ".tmp-in-flight.parquet"
    young.write_bytes(b"being written")
    df = read_results(tmp_path)
    assert (
        len(df) == len(records) and not df.duplicated(["trial_id", "epoch", "label_fraction"]).any()
    )
    late = [dict(records[-1], m_knn_top1=0.99)]  # a result that arrives after compaction
    writer.write_records(late, cfg=cfg, attempt=1, provenance=prov(5))
    writer.compact(cfg.trial_id())  # re-compaction folds everything in, drops the dead temporary
    assert not stale.exists() and young.exists() and fragment_files(tmp_path) == []
    df = read_results(tmp_path)
    assert len(df) == len(records) and df["m_knn_top1"].iloc[-1] == 0.99


def test_unreadable_compacted_file_is_set_aside_not_overwritten(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    write_sweep(writer, [(cfg, records)])
    target = Path(writer.compact(cfg.trial_id()))
    target.write_bytes(b"not parquet")
    write_sweep(writer, [(cfg, records[:1])], attempt=1)
    with pytest.warns(StoreWarning, match=str(target)):
        writer.compact(cfg.trial_id())
    assert len(list(target.parent.glob("_corrupt-*"))) == 1
    assert len(read_results(tmp_path)) == 1


def test_read_root_with_several_sweeps_and_filter_by_sweep(tmp_path, trials):
    write_sweep(FragmentWriter(tmp_path, "a"), trials[:1])
    write_sweep(FragmentWriter(tmp_path, "b"), trials[1:2])
    (tmp_path / "not_a_sweep").mkdir()
    both = read_results(tmp_path)
    assert set(both["sweep_id"]) == {"a", "b"}
    assert set(read_results(tmp_path, "b")["sweep_id"]) == {"b"}
    assert set(read_results(tmp_path / "a")["sweep_id"]) == {"a"}
    with pytest.raises(StoreError, match="no sweep 'c'"):
        read_results(tmp_path, "c")


def test_empty_or_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(StoreError, match=r"^no results under .*nope: the path does not exist\.$"):
        read_results(tmp_path / "nope")
    with pytest.raises(StoreError, match="no results under"):
        read_results(tmp_path)
    (tmp_path / "s" / "fragments").mkdir(parents=True)
    with pytest.raises(StoreError, match="no Parquet files"):
        read_results(tmp_path)


def test_bad_ids_and_foreign_rows_are_refused(tmp_path, trials):
    with pytest.raises(StoreError, match=r"'\.\./x'"):
        FragmentWriter(tmp_path, "../x")
    table = make_rows(
        trials[0][1][:1], sweep_id="other", cfg=trials[0][0], attempt=0, provenance={}
    )
    with pytest.raises(StoreError, match="'other'"):
        FragmentWriter(tmp_path, "s").write(table)
    with pytest.raises(StoreError, match="'bogus'"):
        FragmentWriter(tmp_path, "s").write([{"bogus": 1}])


def test_file_uri_and_relative_path_reach_the_same_store(tmp_path, trials, monkeypatch):
    monkeypatch.chdir(tmp_path)
    n = write_sweep(FragmentWriter("rel", "s"), trials[:1])
    fs, path = resolve_storage("rel")
    assert fs.type_name == "local" and path == str(tmp_path / "rel")
    write_sweep(FragmentWriter(f"file://{tmp_path}/rel", "t"), trials[1:2])
    df = read_results(f"file://{tmp_path}/rel")
    assert set(df["sweep_id"]) == {"s", "t"} and (df["sweep_id"] == "s").sum() == n


@pytest.mark.parametrize("kind", ["mock", "subtree"])
def test_pyarrow_filesystems(tmp_path, trials, kind):
    if kind == "mock":
        fs = pafs._MockFileSystem()  # in-memory: the code path of s3:// or gs:// without network
        assert resolve_storage("mock://bucket/results")[0].type_name == "mock"
    else:
        fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    writer = FragmentWriter("bucket/results", "s", filesystem=fs)
    n = write_sweep(writer, trials)
    assert len(read_results("bucket/results", filesystem=fs)) == n
    for cfg, _ in trials:
        writer.compact(cfg.trial_id())
    infos = fs.get_file_info(pafs.FileSelector("bucket/results", recursive=True))
    assert not [i for i in infos if "fragments/" in i.path and i.type == pafs.FileType.File]
    assert len(read_results("bucket/results", filesystem=fs)) == n
    write_sweep_meta("bucket/results", "s", {"trials": len(trials)}, filesystem=fs)
    assert read_sweep_meta("bucket/results", "s", filesystem=fs)["trials"] == len(trials)


def test_unusable_uri_is_a_store_error():
    with pytest.raises(StoreError, match="nosuchscheme://x"):
        resolve_storage("nosuchscheme://x")


def test_sweep_meta_round_trip_and_missing(tmp_path):
    path = write_sweep_meta(tmp_path, "s", {"space": "grid: {}", "space_sha256": "ab", "trials": 3})
    assert Path(path).name == "sweep.json" and not list(Path(path).parent.glob(".tmp-*"))
    meta = read_sweep_meta(tmp_path, "s")
    assert meta["sweep_id"] == "s" and meta["trials"] == 3 and "created_at" in meta
    with pytest.raises(StoreError, match="no sweep metadata"):
        read_sweep_meta(tmp_path, "t")


def test_expand_extra_turns_plugin_terms_into_columns(tmp_path, trials):
    cfg, records = trials[0]
    writer = FragmentWriter(tmp_path, "s")
    writer.write_records([dict(records[0], m_myloss_push=1.5)], cfg=cfg, attempt=0, provenance={})
    df = expand_extra(read_results(tmp_path))
    assert df["m_myloss_push"].tolist() == [1.5] * len(records[:1])
    assert expand_extra(df.drop(columns=["m_myloss_push"])).equals(df)


# --- summary -----------------------------------------------------------------------------------


def test_summary_counts_statuses_and_best_final_accuracy(tmp_path, capsys):
    df = synthetic_rows(None, 5, losses=("infonce", "clop+vicreg"), lrs=(0.01, 10.0),
                        batch_sizes=(32,), seeds=(0, 1), running_fraction=0.3)  # fmt: skip
    summary = summarize(df)
    assert list(summary["loss"]) == ["clop+vicreg", "infonce"]
    for _, row in summary.iterrows():
        part = df[df["loss"] == row["loss"]]
        assert row["trials"] == part["trial_id"].nunique()
        finals = part[part["final"]]
        assert row["best_knn_top1"] == finals["m_knn_top1"].max()
        assert row[["done", "diverged", "timeout", "error", "running"]].sum() == row["trials"]
    assert summary["running"].sum() > 0 and summary["diverged"].sum() > 0
    text = format_summary(summary)
    assert "sweep synthetic" in text and "clop+vicreg" in text and "best kNN top-1 %" in text
    FragmentWriter(tmp_path, "synthetic").write(
        pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    )
    assert main(["results", str(tmp_path)]) == 0
    assert "infonce" in capsys.readouterr().out
    assert main(["results", str(tmp_path / "missing")]) == 2
    assert "no results under" in capsys.readouterr().err


def test_synthetic_rows_are_deterministic_and_show_the_stability_edge():
    grid = {"losses": ("infonce", "cloa+infonce"), "lrs": (0.01, 30.0), "batch_sizes": (64,)}
    df = synthetic_rows(None, 6, **grid)
    pd.testing.assert_frame_equal(df, synthetic_rows(None, 6, **grid))
    last = df[df["final"]].groupby(["loss", "p_lr"])["status"].agg(set)
    assert last[("infonce", 30.0)] == {"diverged"} and last[("infonce", 0.01)] == {"done"}
    assert last[("cloa+infonce", 0.01)] == {"done"}
    assert synthetic_rows(7, 2)["trial_id"].nunique() == 7
