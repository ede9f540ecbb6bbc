"""Q1.1–Q1.3: how similar are the 25 Taskonomy representations on BOLD5000's images?

Q1.1  model × model RSA (RDM = 1 − Pearson r between images; RDMs compared by Spearman)
Q1.2  average-linkage dendrogram of the models
Q1.3  the same on the scene images only (BOLD5000's SUN scenes)

    python examples/q1_rsa.py                          # synthetic features, planted groups
    python examples/q1_rsa.py --features features.zarr # real features (neurotask extract)
"""

from __future__ import annotations

import _data
import numpy as np

import neurotask as nt


def main() -> None:
    args = _data.parser(__doc__.splitlines()[0]).parse_args()
    client = _data.client(args)
    feats = _data.features(args)
    print(f"{feats.sizes['model']} models × {feats.sizes['image']} images × {feats.sizes['feature']} features")
    for name, subset in (("all", None), ("scenes", {"source": "scene"})):
        sim = nt.rsa.model_similarity(feats, subset=subset, rdm_method="correlation", compare="spearman")  # Q1.1 / Q1.3
        tree = nt.rsa.linkage(sim, method="average")  # Q1.2
        args.out.mkdir(parents=True, exist_ok=True)
        sim.to_netcdf(args.out / f"q1_similarity_{name}.nc")
        _data.save(nt.plotting.plot_similarity(sim, title=f"RSA, {name} ({sim.attrs.get('n_images')} images)"),
                   args.out / f"q1_rsa_{name}.png")
        _data.save(nt.plotting.plot_dendrogram(sim, title=f"dendrogram, {name}"), args.out / f"q1_dendrogram_{name}.png")
        values = sim.values.copy()
        np.fill_diagonal(values, np.nan)
        i, j = np.unravel_index(np.nanargmax(values), values.shape)
        models = [str(m) for m in sim["model"].values]
        print(f"[{name}] most similar pair: {models[i]} ~ {models[j]} (rho = {values[i, j]:.3f}); "
              f"leaf order: {', '.join(tree.labels[k] for k in tree.order)}")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
