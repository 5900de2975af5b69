"""Shared by every test: this folder is on sys.path (pytest's rootdir conftest), so tests and
benchmarks import the fixtures kept here (`synthetic_results`, `tiny_trial`) as modules."""
