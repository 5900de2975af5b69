"""contrastive-bench: a distributed benchmark harness for contrastive losses."""

__version__ = "0.1.0"
