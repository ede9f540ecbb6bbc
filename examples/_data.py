"""Inputs shared by the example scripts: real BOLD5000 when paths are given, synthetic otherwise.

Real data::

    python examples/q1_rsa.py --features features.zarr
    python examples/q2_encoding.py --features features.zarr --bold5000 /data/BOLD5000 --subject CSI1

(``features.zarr`` from ``neurotask extract /data/BOLD5000 --store features.zarr`` with the
published weights.) Without paths, each script builds a synthetic stand-in: 25 models whose
features fall into the planted Taskonomy groups, and a synthetic BOLD5000 subject planted on them
(a few sessions on a small grid) — the same code path, in a minute or two on a laptop.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import xarray as xr

import neurotask as nt


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--features", type=Path, help="features store (neurotask extract); default: synthetic")
    p.add_argument("--bold5000", type=Path, help="BOLD5000 root (release 2 GLMsingle betas); default: synthetic")
    p.add_argument("--responses", type=Path, help="responses store (neurotask ingest), instead of --bold5000")
    p.add_argument("--subject", default="CSI1", help="BOLD5000 subject (default CSI1)")
    p.add_argument("--out", type=Path, default=Path("examples-output"), help="where figures and tables go")
    p.add_argument("--sessions", type=int, default=4, help="synthetic sessions (default 4; the last is the test set)")
    p.add_argument("--synthetic-features", type=int, default=256,
                   help="features per synthetic model (default 256; real encoders give 2048)")
    p.add_argument("--scheduler", help="Dask scheduler address (default: compute in this process)")
    return p


def features(args: argparse.Namespace) -> xr.DataArray:
    """The features: the store given, or synthetic features over the synthetic subject's images."""
    if args.features is not None:
        return nt.open_features(args.features)
    from neurotask.datasets import bold5000_trials, make_synthetic_features

    images = list(dict.fromkeys(bold5000_trials(args.subject, n_sessions=args.sessions)["image"]))
    return make_synthetic_features(None, images, n_features=args.synthetic_features, seed=0)


def responses(args: argparse.Namespace, feats: xr.DataArray) -> xr.DataArray:
    """The responses: a store, a BOLD5000 root, or a synthetic subject planted on ``feats``."""
    if args.responses is not None:
        return nt.open_responses(args.responses)
    store = args.out / f"responses-{args.subject}.zarr"
    if args.bold5000 is not None:
        return nt.load_bold5000(args.bold5000, subject=args.subject, store=store)
    from neurotask.datasets import groundtruth_path, write_synthetic_bold5000

    root = args.out / "synthetic-bold5000"
    if not groundtruth_path(root, args.subject).exists():  # written once, reused by the other examples
        write_synthetic_bold5000(root, feats, args.subject, n_sessions=args.sessions, volume_shape=(12, 14, 12))
    return nt.load_bold5000(root, subject=args.subject, store=store)


def client(args: argparse.Namespace):
    """A client on ``--scheduler``, or None (the library then computes in this process)."""
    if args.scheduler is None:
        return None
    from neurotask.cluster import get_client

    return get_client(args.scheduler)


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")
