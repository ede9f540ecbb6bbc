"""Q2.1–Q2.3: which Taskonomy models predict the voxels, and how similar are they from the brain?

Q2.3  R² (and r) of each single model's voxelwise ridge on the held-out session
      (session 15 for CSI1–3 on real data; the last synthetic session otherwise)
Q2.2  permutation test of each voxel's r (test rows shuffled against fixed predictions) + BH-FDR
Q2.1  prediction similarity across models: the brain-derived task similarity (cosine of the
      significance-masked voxelwise r, Neural Taskonomy Fig. 6) and the correlation of R² maps

    python examples/q2_encoding.py
    python examples/q2_encoding.py --features features.zarr --bold5000 /data/BOLD5000 --test-session 15
"""

from __future__ import annotations

import _data
import numpy as np
import xarray as xr

import neurotask as nt


def main() -> None:
    p = _data.parser(__doc__.splitlines()[0])
    p.add_argument("--test-session", type=int, help="held-out session (default: the last one)")
    p.add_argument("--permutations", type=int, default=1000)
    args = p.parse_args()
    client = _data.client(args)
    feats = _data.features(args)
    resp = _data.responses(args, feats)
    test = [args.test_session] if args.test_session else None
    models = [str(m) for m in feats["model"].values]

    # Q2.3: single-model encoding, scored on the held-out session
    fit = nt.encoding.fit(feats, resp, models=models, test_sessions=test, store=args.out / f"fit-{args.subject}.zarr")
    print(nt.encoding.summary(fit).sort_values("r2", ascending=False).to_string())

    # Q2.2: permutation test + Benjamini–Hochberg FDR over voxels, per model
    perm = nt.stats.permutation_test(fit, resp, feats, n_permutations=args.permutations, seed=0, q=0.05)
    counts = perm["significant"].sum("voxel").to_series().sort_values(ascending=False)
    print("significant voxels (q = 0.05):\n" + counts.to_string())
    _data.save(nt.plotting.plot_significant_counts(perm), args.out / "q2_significant_counts.png")
    _data.save(nt.plotting.plot_winning_model(fit, significant=perm["significant"], grid=resp), args.out / "q2_winning_model.png")

    # Q2.1: similarity of the models' predictions of the brain
    brain = nt.stats.task_similarity(fit, perm)
    defined = [m for m in models if not bool(brain.sel(model=m).isnull().all())]
    if len(defined) < len(models):  # a model without significant voxels has no direction
        print(f"no significant voxels (similarity undefined): {sorted(set(models) - set(defined))}")
    brain = brain.sel(model=defined, model_=defined)
    r2_maps = fit["r2"].rename(model="model_")
    correlation = xr.corr(fit["r2"], r2_maps, dim="voxel")
    brain.to_netcdf(args.out / "q2_task_similarity.nc")
    _data.save(nt.plotting.plot_similarity(brain, title="brain-derived task similarity"), args.out / "q2_task_similarity.png")
    rsa = nt.rsa.model_similarity(feats.sel(model=defined))
    _data.save(nt.plotting.compare_trees(rsa, brain), args.out / "q2_rsa_vs_brain_trees.png")
    values = correlation.values.copy()
    np.fill_diagonal(values, np.nan)
    i, j = np.unravel_index(np.nanargmax(values), values.shape)
    print(f"most similar R² maps: {models[i]} ~ {models[j]} (r = {values[i, j]:.3f})")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
