"""Commands that make the analysis inputs: ``synth``, ``ingest`` and ``extract``.

``ingest`` and ``extract`` call the library functions the pipeline's ingest and extract steps
call (:func:`neurotask.fmri.load_bold5000`, :func:`neurotask.features.extract_features`). The
library is imported inside the commands, so that ``--help`` and usage errors answer without it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from neurotask.cli._app import ClusterOption, SchedulerOption, WorkersOption, command, maybe_client

__all__ = ["extract", "ingest", "synth"]


@command()
def synth(
    root: Annotated[Path, typer.Argument(help="Directory to write the synthetic BOLD5000 tree into.")],
    subject: Annotated[str, typer.Option(help="CSI1, CSI2, CSI3 or CSI4.")] = "CSI1",
    sessions: Annotated[
        Optional[int], typer.Option(min=1, help="Sessions to write (default 3; all with --full).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Real size: the subject's volume grid and all sessions.")] = False,
    release: Annotated[str, typer.Option(help="Layout: 2 (GLMsingle betas), 1 (ROI .mat files) or bids.")] = "2",
    images: Annotated[
        Optional[int], typer.Option(min=1, help="Stimuli to draw (default: every image of the written trials).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same tree.")] = 0,
    models: Annotated[
        Optional[str], typer.Option(help="Comma-separated driver models (default: the 25 Taskonomy tasks).")
    ] = None,
    n_features: Annotated[int, typer.Option(min=1, help="Features per model of the synthetic features.")] = 256,
    features: Annotated[
        Optional[Path], typer.Option(help="A features store to plant responses from, instead of synthetic features.")
    ] = None,
    stimuli: Annotated[bool, typer.Option(help="Also write the stimulus images.")] = True,
) -> None:
    """Write a synthetic BOLD5000 subject (stimuli, responses planted from features, ground truth)."""
    if release not in ("1", "2", "bids"):
        raise typer.BadParameter(f"--release must be 2, 1 or bids; got {release!r}")
    from neurotask.datasets import groundtruth_path, write_synthetic_dataset
    from neurotask.stores import open_features

    given = open_features(features) if features is not None else None
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    truth = write_synthetic_dataset(
        root, subject, n_sessions=sessions, full=full, release=release, n_images=images, seed=seed,
        models=model_list, n_features=n_features, features=given, stimuli=stimuli, progress=True,
    )  # fmt: skip
    console = Console()
    drivers = truth.driver.values
    console.print(
        f"[bold]{root}[/bold]: {subject} release {release}, {truth.attrs['n_trials']} trials in "
        f"{truth.attrs['n_sessions']} sessions, volume {tuple(json.loads(truth.attrs['volume_shape']))}, "
        f"{truth.attrs['n_stimuli']} stimuli"
    )
    console.print(
        f"{truth.sizes['voxel']} brain voxels: {(drivers != '').sum()} driven by {len(set(drivers) - {''})} models "
        f"(true R² {truth.true_r2.values[drivers != ''].min():.2f}–{truth.true_r2.values.max():.2f}), "
        f"{(truth.defect.values != '').sum()} defective"
    )
    console.print(f"ground truth: {groundtruth_path(root, subject, release)}")


def _trs(value: str) -> int | tuple[int, ...]:
    try:
        return tuple(int(t) for t in value.split(",")) if "," in value else int(value)
    except ValueError:
        raise typer.BadParameter(f"expected TRs as '3,4', '34' or '3'; got {value!r}", param_hint="--tr") from None


@command()
def ingest(
    root: Annotated[Path, typer.Argument(help="BOLD5000 folder: the release-2 files, ROIs/ or sub-CSIx/.")],
    out: Annotated[Path, typer.Option("--out", help="Responses store to write, e.g. sub-CSI1.zarr.")],
    subject: Annotated[str, typer.Option("--subject", help="CSI1, CSI2, CSI3 or CSI4.")] = "CSI1",
    release: Annotated[str, typer.Option("--release", help="2 (GLMsingle betas), 1 (ROI files) or bids.")] = "2",
    normalize: Annotated[str, typer.Option("--normalize", help="z-score within session, run, or none.")] = "session",
    betas: Annotated[str, typer.Option("--betas", help="GLMsingle betas: TYPEA, TYPEB, TYPEC or TYPED.")] = "TYPED",
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Brain mask (default: the tree's).")] = None,
    resample_mask: Annotated[
        bool,
        typer.Option(
            "--resample-mask",
            help="Resample a brain or ROI mask on another grid to the data's grid (the betas or the BIDS runs; "
            "nearest neighbour, by world coordinates).",
        ),
    ] = False,
    tr: Annotated[str, typer.Option("--tr", help="TRs after onset (releases 1, bids): '3,4', '34' or '3'.")] = "3,4",
    preprocessed: Annotated[
        bool, typer.Option("--preprocessed/--raw", help="BIDS: fmriprep's T1w runs when present, or the raw runs.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a store written with other options.")] = False,
) -> None:
    """Ingest one BOLD5000 subject into a (trial x voxel) responses store, streaming and resumable."""
    from neurotask.fmri import load_bold5000

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resp = load_bold5000(
        root, subject, release, store=out, mask=mask, normalize=normalize, betas=betas, tr=_trs(tr),
        resample_mask=resample_mask, preprocessed=preprocessed, overwrite=overwrite,
    )
    dropped = json.loads(resp.attrs["dropped_voxels"])
    typer.echo(
        f"{out}: {resp.sizes['trial']} trials x {resp.sizes['voxel']} voxels "
        f"({int(resp['session'].max())} sessions, normalize={resp.attrs['normalization']}); dropped {dropped}"
    )


@command()
def extract(
    images: Annotated[Path, typer.Argument(help="Image directory tree, BOLD5000 stimuli root, or one image.")],
    out: Annotated[Path, typer.Option("--out", help="Features store to write (zarr), e.g. features.zarr.")],
    models: Annotated[str, typer.Option("--models", help="'all' or comma-separated tasks/aliases.")] = "all",
    weights: Annotated[
        Optional[Path], typer.Option("--weights", help="Checkpoint directory (then $NEUROTASK_WEIGHTS, hub cache, download).")
    ] = None,
    batch_size: Annotated[
        Optional[int], typer.Option("--batch-size", min=1, help="Images per forward pass [default: 2 on CPU, 16 on CUDA].")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")] = "auto",
    on_error: Annotated[str, typer.Option("--on-error", help="Undecodable images: raise, or skip and list them.")] = "raise",
    fast: Annotated[
        bool, typer.Option("--fast", help="Fold batch norms, run channels-last: ~1.3x faster on CPU, "
                           "features differ from visualpriors' by float32 rounding (~1e-4).")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a store written with other options.")] = False,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Encode images with Taskonomy encoders into a (model x image x feature) store, resumably.

    Without --scheduler/--workers/--cluster slurm it runs in this process on all cores (or the GPU).
    """
    from neurotask.features import extract_features

    with maybe_client(scheduler, cluster, workers) as client:
        feats = extract_features(
            images, models, out, weights=weights, batch_size=batch_size, device=device, on_error=on_error, fast=fast,
            overwrite=overwrite, client=client,
        )
    skipped = len(json.loads(feats.attrs["skipped_files"]))
    typer.echo(
        f"{out}: {feats.sizes['model']} models x {feats.sizes['image']} images x {feats.sizes['feature']} features "
        f"(weights: {feats.attrs['weights_kind']}; {len(json.loads(feats.attrs['grayscale_images']))} grayscale, "
        f"{skipped} skipped)"
    )
