"""Q2.4–Q2.5: what do pairs of Taskonomy models explain jointly, uniquely, and in common?

Q2.4  R² of concatenated pairs (features of A and B side by side, each space standardized)
Q2.5  unique(A) = R²(A∪B) − R²(B), shared = R²(A) + R²(B) − R²(A∪B), and the asymmetric
      transfer(A→B) = shared / R²(B), per voxel and as means over voxels

    python examples/q2_partition.py --pair autoencoding depth_euclidean --pair normal class_object
    python examples/q2_partition.py --features features.zarr --bold5000 /data/BOLD5000 --test-session 15
"""

from __future__ import annotations

import _data

import neurotask as nt


def main() -> None:
    p = _data.parser(__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"), help="a model pair (repeatable)")
    p.add_argument("--test-session", type=int, help="held-out session (default: the last one)")
    args = p.parse_args()
    client = _data.client(args)
    pairs = [tuple(x) for x in (args.pair or [("autoencoding", "depth_euclidean"), ("normal", "class_object"),
                                              ("depth_euclidean", "depth_zbuffer")])]
    feats = _data.features(args)
    resp = _data.responses(args, feats)
    test = [args.test_session] if args.test_session else None
    singles = sorted({m for pair in pairs for m in pair})

    fit = nt.encoding.fit(feats, resp, models=singles, test_sessions=test)
    vp = nt.stats.variance_partition(feats, resp, pairs=pairs, results=fit)  # Q2.4 + Q2.5
    args.out.mkdir(parents=True, exist_ok=True)
    vp.to_netcdf(args.out / "q2_partition.nc")
    # the library's per-pair summaries: mean R²s, and ratios of those means
    means = vp[[v for v in vp.data_vars if v.endswith("_mean")]].reset_coords(drop=True).to_dataframe()
    print(means.to_string(float_format=lambda x: f"{x:.4f}"))
    _data.save(nt.plotting.plot_variance_partition(vp), args.out / "q2_partition.png")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
