"""The tiny synthetic data set of the pipeline and SLURM tests, and its reference run (session fixtures).

Two subjects (CSI1, CSI2; 2 sessions each, an 8x10x8 grid) planted on 3 models of 32 synthetic
features over both subjects' images. The reference is the whole pipeline for CSI1 on an
in-process Dask cluster: what every disturbed run (a worker killed, the process killed and
re-run, a separate scheduler, SLURM) must reproduce bit for bit. Built once per session
(~13 s) rather than once in each module that compares against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from neurotask import pipeline, stores
from neurotask.datasets import bold5000_trials, make_synthetic_features, write_synthetic_bold5000

MODELS = ["autoencoding", "depth_euclidean", "class_object"]


def make_config(data: tuple[Path, Path], out: Path, **overrides) -> dict:
    """The whole-pipeline config for CSI1; ``section.key=value`` (or top-level ``key=value``) overrides."""
    root, feature_store = data
    config = {
        "out": str(out),
        "subjects": ["CSI1"],
        "models": MODELS,
        "extract": {"store": str(feature_store)},
        "ingest": {"root": str(root)},
        "encode": {"test_sessions": [2], "alphas": [1.0, 10.0, 100.0, 1000.0], "cv": 2},
        "permute": {"n_permutations": 1000, "seed": 0},  # min p = 1/1001: BH passes the planted voxels
        "partition": {"pairs": [["autoencoding", "depth_euclidean"]]},
        "cluster": {"workers": 1, "processes": False},  # runs without a client: threads in-process
    }
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (config.setdefault(section, {}) if section else config)[name] = value
    return config


@pytest.fixture(scope="session")
def small_subject(tmp_path_factory) -> tuple[Path, Path]:
    """``(BOLD5000 root, features store)``: CSI1 and CSI2, release 2, planted on :data:`MODELS`."""
    root = tmp_path_factory.mktemp("bold5000")
    images = list(dict.fromkeys(img for s in ("CSI1", "CSI2") for img in bold5000_trials(s, n_sessions=2)["image"]))
    features = make_synthetic_features(MODELS, images, n_features=32, seed=0)
    feature_store = root / "features.zarr"
    stores.write_dataset(feature_store, features.to_dataset(name="features"), region_dim="model",
                         chunks={"model": 1, "image": 512, "feature": -1})
    for seed, subject in enumerate(("CSI1", "CSI2")):
        write_synthetic_bold5000(root, features, subject, n_sessions=2, volume_shape=(8, 10, 8), snr=(0.5, 3.0),
                                 seed=seed)
    return root, feature_store


@pytest.fixture(scope="session")
def small_reference(small_subject, tmp_path_factory) -> tuple[Path, pipeline.RunSummary]:
    """The output folder and summary of :func:`make_config` run on an in-process cluster (1 worker, 2 threads)."""
    out = tmp_path_factory.mktemp("reference")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        summary = pipeline.run(make_config(small_subject, out), client=client)
    return out, summary
