"""The ``neurotask`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

app = typer.Typer(
    name="neurotask",
    help="Neural Taskonomy analyses on BOLD5000: features, responses, RSA, encoding, statistics, report.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """neurotask command line."""


# --------------------------------------------------------------------------------------------
# cluster options shared by every command (pipeline/cluster area). Use them as
#   def mycommand(..., scheduler: SchedulerOption = None, cluster: ClusterOption = "local",
#                 workers: WorkersOption = None):
#       with cluster_client(scheduler, cluster, workers) as client: ...


if TYPE_CHECKING:
    from distributed import Client

SchedulerOption = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
]
ClusterOption = Annotated[
    str, typer.Option("--cluster", help="Where to start workers without --scheduler: 'local' or 'slurm'.")
]
WorkersOption = Annotated[
    Optional[int], typer.Option("--workers", min=1, help="Worker processes (local) or SLURM jobs (slurm).")
]


@contextmanager
def cluster_client(
    scheduler: str | None = None, cluster: str = "local", workers: int | None = None, **options: Any
) -> Iterator[Client]:
    """The Dask client for a command's cluster options (closed, with what it started, on exit)."""
    from neurotask.cluster import get_client

    try:
        client = get_client(scheduler, cluster, workers=workers, **options)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    with client:
        yield client


# --------------------------------------------------------------------------------------------
# synthetic data (datasets area)


@app.command()
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
    import json

    from rich.console import Console

    from neurotask.datasets import groundtruth_path, write_synthetic_dataset

    given = None
    if features is not None:
        from neurotask.stores import open_features

        given = open_features(features)
    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if release not in ("1", "2", "bids"):
        raise typer.BadParameter(f"--release must be 2, 1 or bids; got {release!r}")
    try:
        truth = write_synthetic_dataset(
            root, subject, n_sessions=sessions, full=full, release=release, n_images=images, seed=seed,
            models=model_list, n_features=n_features, features=given, stimuli=stimuli, progress=True,
        )  # fmt: skip
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
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


# --------------------------------------------------------------------------------------------
# pipeline: demo, run, report



@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output directory (data, stores, report).")] = Path("demo-output"),
    full_models: Annotated[bool, typer.Option("--full-models", help="All 25 Taskonomy models (slow on a CPU).")] = False,
    images: Annotated[int, typer.Option("--images", min=20, help="Trials/images of the synthetic subject (whole runs of 37).")] = 111,
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="Permutations of the significance test.")] = 200,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Run the whole analysis on synthetic BOLD5000 data and write an HTML report."""
    from neurotask.demo import demo as run_demo

    options = {"scheduler": scheduler, "cluster": cluster, "workers": workers}
    summary = run_demo(out, full_models=full_models, n_images=images, n_permutations=permutations,
                       cluster={k: v for k, v in options.items() if v is not None})
    _print_summary(summary)


@app.command("run")
def run_config(
    config: Annotated[Path, typer.Argument(help="TOML configuration (see neurotask.pipeline).")],
    steps: Annotated[Optional[list[str]], typer.Option("--step", help="Run only this step (repeatable).")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Run every step of a configured analysis; a re-run skips completed steps and resumes."""
    from neurotask.pipeline import ConfigError, load_config, run

    try:
        cfg = load_config(config)
        section = cfg.setdefault("cluster", {})
        for key, value in (("scheduler", scheduler), ("workers", workers)):
            if value is not None:
                section[key] = value
        if cluster != "local":
            section["cluster"] = cluster
        summary = run(cfg, steps=steps)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    _print_summary(summary)


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A pipeline output directory.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="HTML file (default: RESULTS/report.html).")] = None,
) -> None:
    """Write the self-contained HTML report of a pipeline output directory."""
    from neurotask.report import write

    if not results.is_dir():
        raise typer.BadParameter(f"{str(results)!r} is not a directory", param_hint="RESULTS")
    path = write(results, out or results / "report.html")
    typer.echo(f"report: {path}")


def _print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("step", "status", title=f"neurotask → {summary.out}")
    for key, status in summary.statuses.items():
        table.add_row(key, status)
    Console().print(table)
    if summary.report is not None:
        typer.echo(f"report: {summary.report}")


# --------------------------------------------------------------------------------------------
# fMRI ingestion (fmri area)


@app.command()
def ingest(
    root: Annotated[Path, typer.Argument(help="BOLD5000 root folder (derivatives/, ROIs/ or sub-CSIx/).")],
    out: Annotated[Path, typer.Option("--out", help="Responses store to write, e.g. sub-CSI1.zarr.")],
    subject: Annotated[str, typer.Option("--subject", help="CSI1, CSI2, CSI3 or CSI4.")] = "CSI1",
    release: Annotated[str, typer.Option("--release", help="2 (GLMsingle betas), 1 (ROI files) or bids.")] = "2",
    normalize: Annotated[str, typer.Option("--normalize", help="z-score within session, run, or none.")] = "session",
    betas: Annotated[str, typer.Option("--betas", help="GLMsingle betas: TYPEA, TYPEB, TYPEC or TYPED.")] = "TYPED",
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Brain mask (default: the tree's).")] = None,
    resample_mask: Annotated[
        bool, typer.Option("--resample-mask", help="Resample a mask on another grid to the betas' grid.")
    ] = False,
    tr: Annotated[str, typer.Option("--tr", help="TRs after onset (releases 1, bids): '3,4', '34' or '3'.")] = "3,4",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a store written with other options.")] = False,
) -> None:
    """Ingest one BOLD5000 subject into a (trial x voxel) responses store, streaming and resumable."""
    import json
    import logging

    from neurotask.fmri import load_bold5000

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trs = tuple(int(t) for t in tr.split(",")) if "," in tr else int(tr)
    try:
        resp = load_bold5000(
            root, subject, release, store=out, mask=mask, normalize=normalize, betas=betas, tr=trs,
            resample_mask=resample_mask, overwrite=overwrite,
        )
    except (ValueError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    dropped = json.loads(resp.attrs["dropped_voxels"])
    typer.echo(
        f"{out}: {resp.sizes['trial']} trials x {resp.sizes['voxel']} voxels "
        f"({int(resp['session'].max())} sessions, normalize={resp.attrs['normalization']}); dropped {dropped}"
    )


# --------------------------------------------------------------------------------------------
# rsa (RSA area): model x model similarity of the features' RDMs, its tree, figures


def _parse_subset(values: list[str] | None) -> Any:
    """``--subset`` values: ``coord=value[,value]`` (ANDed), a query expression, or ``@ids.txt``."""
    if not values:
        return None
    if len(values) == 1 and values[0].startswith("@"):
        return [line.strip() for line in Path(values[0][1:]).read_text().splitlines() if line.strip()]
    if len(values) == 1 and any(op in values[0] for op in ("==", "!=", "<", ">", " in ", "&", "|")):
        return values[0]
    subset: dict[str, list[str]] = {}
    for value in values:
        coord, sep, wanted = value.partition("=")
        if not sep or not coord or not wanted:
            raise typer.BadParameter(
                f"--subset {value!r}: write coord=value[,value] (e.g. source=scene), a query such as "
                f"'source == \"scene\"', or @file with one image id per line"
            )
        subset.setdefault(coord.strip(), []).extend(w.strip() for w in wanted.split(","))
    return subset


@app.command("rsa")
def rsa_command(
    features: Annotated[Path, typer.Argument(help="Features store (zarr) written by `neurotask extract`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for similarity.zarr, similarity.csv and figures.")],
    subset: Annotated[
        Optional[list[str]],
        typer.Option("--subset", help="Images: coord=value[,value] (repeatable, ANDed), a query, or @ids.txt."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="RDM: correlation, cosine or euclidean.")] = "correlation",
    compare: Annotated[str, typer.Option("--compare", help="RDM comparison: spearman, pearson or tau-a.")] = "spearman",
    linkage_method: Annotated[str, typer.Option("--linkage", help="Tree linkage: average, complete, single, weighted.")] = "average",
    formats: Annotated[str, typer.Option("--format", help="Figure formats, comma-separated (png, svg, pdf).")] = "png,svg",
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """RSA across models: similarity matrix of their RDMs, average-linkage tree, figures.

    Without --scheduler/--workers/--cluster slurm it runs in this process (models side by side on
    threads), which is fastest on one machine.
    """
    import json

    import matplotlib

    matplotlib.use("Agg")
    from neurotask import rsa
    from neurotask.plotting.rsa import plot_dendrogram, plot_similarity
    from neurotask.stores import StoreError, open_features, sha256_array, write_dataset

    parsed = _parse_subset(subset)
    kinds = [f.strip() for f in formats.split(",") if f.strip()]
    try:
        feats = open_features(features)
        if scheduler is None and workers is None and cluster == "local":
            sim = rsa.model_similarity(feats, parsed, rdm_method=method, compare=compare)
        else:
            with cluster_client(scheduler, cluster, workers) as client:
                sim = rsa.model_similarity(feats, parsed, rdm_method=method, compare=compare, client=client)
        tree = rsa.linkage(sim, method=linkage_method)
    except (ValueError, StoreError, FileNotFoundError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    out.mkdir(parents=True, exist_ok=True)
    sim.attrs["dendrogram_order"] = json.dumps(tree.leaves)
    parameters = {"features": str(features), "subset": sim.attrs["subset"], "method": method, "compare": compare,
                  "linkage": linkage_method}
    write_dataset(
        out / "similarity.zarr", sim.to_dataset(), parameters=parameters,
        inputs={"features": str(features), "images": sim.attrs["images_sha256"],
                "similarity": sha256_array(sim.values)},
    )
    sim.to_pandas().to_csv(out / "similarity.csv")
    figures = {"similarity": plot_similarity(sim, method=linkage_method), "dendrogram": plot_dendrogram(tree)}
    for name, fig in figures.items():
        for kind in kinds:
            fig.savefig(out / f"{name}.{kind}", dpi=150, bbox_inches="tight")
    typer.echo(
        f"{out}: {compare} similarity of {method} RDMs for {sim.sizes['model']} models on "
        f"{sim.attrs['n_images']} images ({sim.attrs['subset']}); tree: {', '.join(tree.leaves)}"
    )


# --------------------------------------------------------------------------------------------
# feature extraction (features area)


@app.command()
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
    import json

    from neurotask.features import extract_features
    from neurotask.stores import StoreError

    options = dict(
        weights=weights, batch_size=batch_size, device=device, on_error=on_error, fast=fast,
        overwrite=overwrite,
    )
    try:
        if scheduler is None and workers is None and cluster == "local":
            feats = extract_features(images, models, out, **options)
        else:
            with cluster_client(scheduler, cluster, workers) as client:
                feats = extract_features(images, models, out, client=client, **options)
    except (ValueError, StoreError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    skipped = len(json.loads(feats.attrs["skipped_files"]))
    typer.echo(
        f"{out}: {feats.sizes['model']} models x {feats.sizes['image']} images x {feats.sizes['feature']} features "
        f"(weights: {feats.attrs['weights_kind']}; {len(json.loads(feats.attrs['grayscale_images']))} grayscale, "
        f"{skipped} skipped)"
    )


# --------------------------------------------------------------------------------------------
# statistics (stats area): permutation nulls + FDR, variance partitioning


def _stats_client(scheduler: str | None, cluster: str, workers: int | None):
    """A cluster client context when cluster options were given, else a no-op (in-process)."""
    from contextlib import nullcontext

    if scheduler is None and workers is None and cluster == "local":
        return nullcontext(None)
    return cluster_client(scheduler, cluster, workers)


@app.command()
def permute(
    results: Annotated[Path, typer.Argument(help="Encoding results store written by `neurotask encode`.")],
    responses: Annotated[Path, typer.Option("--responses", help="The responses store the results were fitted on.")],
    features: Annotated[Path, typer.Option("--features", help="The features store the results were fitted on.")],
    out: Annotated[Path, typer.Option("--out", help="Store to write p, q, significant (zarr), e.g. permutation.zarr.")],
    permutations: Annotated[int, typer.Option("--permutations", min=1, help="Number of permutations.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations.")] = 0,
    method: Annotated[str, typer.Option("--method", help="shuffle-test (permute test rows) or refit.")] = "shuffle-test",
    statistic: Annotated[str, typer.Option("--statistic", help="r or r2.")] = "r",
    q: Annotated[float, typer.Option("--q", help="FDR level (Benjamini-Hochberg, per model).")] = 0.05,
    fwer: Annotated[bool, typer.Option("--fwer", help="Also the max-statistic FWER threshold and p-values.")] = False,
    figure: Annotated[Optional[Path], typer.Option("--figure", help="Write the significant-voxel counts figure here.")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Voxelwise permutation p-values of an encoding fit, with BH-FDR significance per model."""
    from neurotask.stats import permutation_test
    from neurotask.stores import StoreError, open_features, open_responses, open_results, write_dataset

    try:
        fit, resp, feats = open_results(results), open_responses(responses), open_features(features)
        with _stats_client(scheduler, cluster, workers) as client:
            perm = permutation_test(
                fit, resp, feats, n_permutations=permutations, seed=seed, method=method, statistic=statistic, q=q,
                fwer=fwer, client=client, progress=True,
            )
    except (ValueError, StoreError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    parameters = {"results": str(results), "responses": str(responses), "features": str(features), **perm.attrs}
    write_dataset(out, perm, parameters=parameters, chunks={"voxel": 4096}, region_dim="voxel")
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        from neurotask.plotting import plot_significant_counts

        plot_significant_counts(perm).savefig(figure, dpi=150, bbox_inches="tight")
    counts = perm.significant.sum("voxel").to_series()
    typer.echo(f"{out}: {method} null, {permutations} permutations, {statistic}; significant voxels at FDR q={q} "
               f"(of {perm.sizes['voxel']}):")
    for model, count in counts.sort_values(ascending=False).items():
        typer.echo(f"  {model}: {int(count)}")


@app.command()
def partition(
    features: Annotated[Path, typer.Argument(help="Features store.")],
    responses: Annotated[Path, typer.Argument(help="Responses store.")],
    out: Annotated[Path, typer.Option("--out", help="Store to write the partition (zarr), e.g. partition.zarr.")],
    pair: Annotated[
        Optional[list[str]], typer.Option("--pair", help="A model pair 'a,b' (repeatable); default all pairs.")
    ] = None,
    results: Annotated[
        Optional[Path], typer.Option("--results", help="Encoding results store whose single-model fits to reuse.")
    ] = None,
    banded: Annotated[bool, typer.Option("--banded", help="Joint fit with a separate alpha per space.")] = False,
    ceiling: Annotated[bool, typer.Option("--ceiling", help="Also scores as fractions of the noise ceiling.")] = False,
    cv: Annotated[int, typer.Option("--cv", min=2, help="Folds of the session-grouped CV choosing alphas.")] = 5,
    figure: Annotated[Optional[Path], typer.Option("--figure", help="Write the variance-partitioning chart here.")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Unique and shared variance and transfer scores for pairs of models (fits A, B and A∪B)."""
    from neurotask.stats import variance_partition
    from neurotask.stores import StoreError, open_features, open_responses, open_results, write_dataset

    pairs: Any = "all"
    if pair:
        pairs = [tuple(p.split(",")) for p in pair]
        if any(len(p) != 2 for p in pairs):
            raise typer.BadParameter("--pair takes two model names separated by a comma, e.g. normal,depth_zbuffer")
    try:
        feats, resp = open_features(features), open_responses(responses)
        fit = open_results(results) if results is not None else None
        noise = None
        if ceiling:
            from neurotask.fmri import noise_ceiling

            noise = noise_ceiling(resp)
        with _stats_client(scheduler, cluster, workers) as client:
            vp = variance_partition(feats, resp, pairs, results=fit, banded=banded, ceiling=noise, cv=cv, client=client)
            vp = vp.compute()
    except (ValueError, StoreError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    parameters = {"features": str(features), "responses": str(responses), "pairs": [str(p) for p in vp.pair.values],
                  "banded": banded, "cv": cv, "results": str(results) if results else None}
    write_dataset(out, vp, parameters=parameters, chunks={"voxel": 4096}, region_dim="voxel")
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        from neurotask.plotting import plot_variance_partition

        plot_variance_partition(vp).savefig(figure, dpi=150, bbox_inches="tight")
    typer.echo(f"{out}: means over {vp.sizes['voxel']} voxels")
    typer.echo(f"  {'pair':40s} {'r2_a':>7s} {'r2_b':>7s} {'r2_ab':>7s} {'uniq_a':>7s} {'uniq_b':>7s} {'shared':>7s} "
               f"{'A->B':>6s} {'B->A':>6s}")
    for name in vp.pair.values:
        row = vp.sel(pair=name)
        values = [float(row[f"{v}_mean"]) for v in ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared")]
        transfer = [float(row[f"transfer_{d}_mean"]) for d in ("a_to_b", "b_to_a")]
        typer.echo(f"  {str(name):40s} " + " ".join(f"{v:7.4f}" for v in values) + " " + " ".join(f"{t:6.2f}" for t in transfer))


# --------------------------------------------------------------------------------------------
# encoding (encoding area): voxelwise ridge with per-voxel alphas, scored on held-out trials


@app.command()
def encode(
    features: Annotated[Path, typer.Argument(help="Features store.")],
    responses: Annotated[Path, typer.Argument(help="Responses store.")],
    out: Annotated[Path, typer.Option("--out", help="Results store to write (zarr), e.g. encoding.zarr.")],
    model: Annotated[
        Optional[list[str]],
        typer.Option("--model", help="A model, or a joint model 'a+b' (repeatable); default every model."),
    ] = None,
    test_session: Annotated[
        Optional[list[str]], typer.Option("--test-session", help="Held-out session (repeatable); default the last.")
    ] = None,
    test_fraction: Annotated[
        Optional[float], typer.Option("--test-fraction", help="Hold out this fraction of images instead.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --test-fraction draw.")] = 0,
    alphas: Annotated[
        Optional[str], typer.Option("--alphas", help="Comma-separated alpha grid; default logspace(-2, 7, 19).")
    ] = None,
    cv: Annotated[str, typer.Option("--cv", help="Folds (int >= 2, grouped by session) or 'gcv'.")] = "5",
    standardize: Annotated[bool, typer.Option("--standardize", help="Scale features to unit variance.")] = False,
    voxel_chunk: Annotated[Optional[int], typer.Option("--voxel-chunk", min=1, help="Voxels per task.")] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """Fit voxelwise ridge encoding models and print mean test R² and r per model."""
    from contextlib import nullcontext

    from neurotask.encoding import fit, summary
    from neurotask.stores import StoreError, open_features, open_responses

    try:
        grid = None if alphas is None else [float(a) for a in alphas.split(",")]
        folds: int | str = cv if cv == "gcv" else int(cv)
    except ValueError as error:
        raise typer.BadParameter(f"--alphas must be numbers separated by commas and --cv an int or 'gcv' ({error})")
    in_process = scheduler is None and workers is None and cluster == "local"
    try:
        feats, resp = open_features(features), open_responses(responses)
        with nullcontext(None) if in_process else cluster_client(scheduler, cluster, workers) as client:
            results = fit(
                feats, resp, model, test_sessions=test_session, test_fraction=test_fraction, seed=seed, alphas=grid,
                cv=folds, standardize=standardize, voxel_chunk=voxel_chunk, client=client, store=out,
            )
    except (ValueError, StoreError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    table = summary(results)
    typer.echo(f"{out}: {results.sizes['voxel']} voxels, split {results.attrs['split']}")
    for name, row in table.sort_values("r2", ascending=False).iterrows():
        typer.echo(f"  {name}: mean R² {row['r2']:.4f}, mean r {row['r']:.4f}")
