"""The smallest trial that still exercises the whole pipeline (shared by the Ray tests)."""

TINY_BASE = {
    "dataset": "synthetic_subspaces",
    "dataset_params": {"n_train": 256, "n_test": 128},
    "backbone": "mlp",
    "mlp_hidden": [32, 32],
    "projector": [32, 16],
    "epochs": 3,
    "batch_size": 64,
    "probe_epochs": 5,
    "geometry_samples": 128,
    "knn_k": 20,
    "device": "cpu",
}
