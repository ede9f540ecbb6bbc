"""Commands of the analysis steps: ``rsa``, ``encode``, ``permute`` and ``partition``.

Each parses its options, calls the step function the pipeline calls
(:mod:`neurotask.pipeline.steps`: it computes and writes ``store=``) and prints a summary. The
library is imported inside the commands, so that ``--help`` and usage errors answer without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from neurotask.cli._app import ClusterOption, SchedulerOption, WorkersOption, command, maybe_client

__all__ = ["encode", "parse_subset", "partition", "permute", "rsa"]


def parse_subset(values: list[str] | None) -> Any:
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


def _save_figures(figures: dict[str, Any], out: Path, kinds: list[str]) -> None:
    for name, fig in figures.items():
        for kind in kinds:
            fig.savefig(out / f"{name}.{kind}", dpi=150, bbox_inches="tight")


@command("rsa")
def rsa(
    features: Annotated[Path, typer.Argument(help="Features store (zarr): written by `neurotask extract`, or any zarr "
                                                  "holding a `features` array with dims (model, image, feature).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for similarity.zarr, similarity.csv and figures.")],
    subset: Annotated[
        Optional[list[str]],
        typer.Option("--subset", help="Images: coord=value[,value] (repeatable, ANDed), a query, or @ids.txt."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="RDM: correlation, cosine or euclidean.")] = "correlation",
    compare: Annotated[str, typer.Option("--compare", help="RDM comparison: spearman, pearson or tau-a.")] = "spearman",
    linkage_method: Annotated[str, typer.Option("--linkage", help="Tree linkage: average, complete, single, weighted.")] = "average",
    formats: Annotated[str, typer.Option("--format", help="Figure formats, comma-separated (png, svg, pdf).")] = "png,svg",
    backend: Annotated[str, typer.Option("--backend", help="numpy, torch, or auto (torch on a GPU when one is visible).")] = "numpy",
    device: Annotated[str, typer.Option("--device", help="Torch device: auto (CUDA if available), cpu, cuda or cuda:N.")] = "auto",
    device_batch: Annotated[
        Optional[int], typer.Option("--device-batch", min=1, help="Cap on image pairs per torch step.")
    ] = None,
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = "local",
    workers: WorkersOption = None,
) -> None:
    """RSA across models: similarity matrix of their RDMs, average-linkage tree, figures.

    Without --scheduler/--workers/--cluster slurm it runs in this process (models side by side on
    threads), which is fastest on one machine.
    """
    import matplotlib

    matplotlib.use("Agg")
    from neurotask import rsa as rsa_methods
    from neurotask.pipeline import steps
    from neurotask.plotting.rsa import plot_dendrogram, plot_similarity
    from neurotask.stores import open_features

    name = " & ".join(subset) if subset else "all"
    subsets = {name: parse_subset(subset)}
    kinds = [f.strip() for f in formats.split(",") if f.strip()]
    feats = open_features(features)
    out.mkdir(parents=True, exist_ok=True)
    parameters = {"features": str(features), "subset": name, "method": method, "compare": compare,
                  "linkage": linkage_method, "backend": backend, "device": device}
    with maybe_client(scheduler, cluster, workers) as client:
        written = steps.rsa(feats, subsets, out / "similarity.zarr", client=client, parameters=parameters,
                            rdm_method=method, compare=compare, backend=backend, device=device,
                            device_batch=device_batch)
    sim = written["similarity"].sel(subset=name, drop=True).load()
    tree = rsa_methods.linkage(sim, method=linkage_method)
    sim.to_pandas().to_csv(out / "similarity.csv")
    _save_figures({"similarity": plot_similarity(sim, method=linkage_method), "dendrogram": plot_dendrogram(tree)},
                  out, kinds)
    typer.echo(
        f"{out}: {compare} similarity of {method} RDMs for {sim.sizes['model']} models on "
        f"{int(written['n_images'].sel(subset=name))} images ({name}) on {written.attrs['backend']} "
        f"({written.attrs['device']}); tree: {', '.join(tree.leaves)}"
    )


def _floats(value: str | None, option: str) -> list[float] | None:
    try:
        return None if value is None else [float(a) for a in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas; got {value!r}", param_hint=option) from None


def _folds(value: str) -> int | str:
    if value == "gcv":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"expected an int >= 2 or 'gcv'; got {value!r}", param_hint="--cv") from None


@command()
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
    grid, folds = _floats(alphas, "--alphas"), _folds(cv)
    models = None if not model else [tuple(m.split("+")) if "+" in m else m for m in model]
    from neurotask.encoding import summary
    from neurotask.pipeline import steps
    from neurotask.stores import open_features, open_responses

    feats, resp = open_features(features), open_responses(responses)
    with maybe_client(scheduler, cluster, workers) as client:
        results = steps.encode(
            feats, resp, out, models=models, test_sessions=test_session, test_fraction=test_fraction, seed=seed,
            alphas=grid, cv=folds, standardize=standardize, voxel_chunk=voxel_chunk, client=client,
        )
    table = summary(results)
    typer.echo(f"{out}: {results.sizes['voxel']} voxels, split {results.attrs['split']}")
    for name, row in table.sort_values("r2", ascending=False).iterrows():
        typer.echo(f"  {name}: mean R² {row['r2']:.4f}, mean r {row['r']:.4f}")


@command()
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
    from neurotask.pipeline import steps
    from neurotask.stores import open_features, open_responses, open_results

    fit, resp, feats = open_results(results), open_responses(responses), open_features(features)
    parameters = {"results": str(results), "responses": str(responses), "features": str(features)}
    with maybe_client(scheduler, cluster, workers) as client:
        perm = steps.permute(
            fit, resp, out, features=feats, client=client, parameters=parameters, n_permutations=permutations,
            seed=seed, method=method, statistic=statistic, q=q, fwer=fwer,
        )
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        from neurotask.plotting import plot_significant_counts

        plot_significant_counts(perm).savefig(figure, dpi=150, bbox_inches="tight")
    counts = perm.significant.sum("voxel").to_series()
    typer.echo(f"{out}: {method} null, {permutations} permutations, {statistic}; significant voxels at FDR q={q} "
               f"(of {perm.sizes['voxel']}):")
    for name, count in counts.sort_values(ascending=False).items():
        typer.echo(f"  {name}: {int(count)}")


def _pairs(pair: list[str] | None) -> Any:
    if not pair:
        return "all"
    pairs = [tuple(p.split(",")) for p in pair]
    if any(len(p) != 2 for p in pairs):
        raise typer.BadParameter("--pair takes two model names separated by a comma, e.g. normal,depth_zbuffer")
    return pairs


def _print_partition(vp: Any, out: Path) -> None:
    typer.echo(f"{out}: means over {vp.sizes['voxel']} voxels")
    typer.echo(f"  {'pair':40s} {'r2_a':>7s} {'r2_b':>7s} {'r2_ab':>7s} {'uniq_a':>7s} {'uniq_b':>7s} {'shared':>7s} "
               f"{'A->B':>6s} {'B->A':>6s}")
    for name in vp.pair.values:
        row = vp.sel(pair=name)
        values = [float(row[f"{v}_mean"]) for v in ("r2_a", "r2_b", "r2_ab", "unique_a", "unique_b", "shared")]
        transfer = [float(row[f"transfer_{d}_mean"]) for d in ("a_to_b", "b_to_a")]
        typer.echo(f"  {str(name):40s} " + " ".join(f"{v:7.4f}" for v in values) + " "
                   + " ".join(f"{t:6.2f}" for t in transfer))


@command()
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
    pairs = _pairs(pair)
    from neurotask.fmri import noise_ceiling
    from neurotask.pipeline import steps
    from neurotask.stores import open_features, open_responses, open_results

    feats, resp = open_features(features), open_responses(responses)
    fit = open_results(results) if results is not None else None
    noise = noise_ceiling(resp) if ceiling else None
    parameters = {"features": str(features), "responses": str(responses), "pairs": json.dumps(pairs),
                  "banded": banded, "cv": cv, "results": str(results) if results else None}
    with maybe_client(scheduler, cluster, workers) as client:
        vp = steps.partition(feats, resp, out, pairs=pairs, client=client, parameters=parameters, results=fit,
                             banded=banded, ceiling=noise, cv=cv)
    if figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        from neurotask.plotting import plot_variance_partition

        plot_variance_partition(vp).savefig(figure, dpi=150, bbox_inches="tight")
    _print_partition(vp, out)
