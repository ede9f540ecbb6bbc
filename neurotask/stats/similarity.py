"""Brain-derived task similarity (Neural Taskonomy Fig. 6; DESIGN §3)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["task_similarity"]


def _cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows; a zero row has undefined (NaN) similarity to everything."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt((vectors**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = vectors / norms[:, None]
    unit[norms == 0] = np.nan
    return unit @ unit.T


def _masked_vectors(results: xr.Dataset, significance, variable: str) -> xr.DataArray:
    if variable not in results:
        raise ValueError(
            f"results has no {variable!r} variable (it has {sorted(map(str, results.data_vars))}); "
            "pass an encoding fit from nt.encoding.fit, or choose variable=..."
        )
    values = results[variable].transpose("model", "voxel")
    if significance is not None:
        if isinstance(significance, xr.Dataset):
            if "significant" not in significance:
                raise ValueError("significance must hold a 'significant (model, voxel)' variable (see permutation_test).")
            significance = significance["significant"]
        values = values.where(significance.transpose("model", "voxel").astype(bool), 0.0)
    return values.fillna(0.0)


def task_similarity(
    results: xr.Dataset | Sequence[tuple[xr.Dataset, xr.Dataset | xr.DataArray | None]],
    significance: xr.Dataset | xr.DataArray | None = None,
    *,
    variable: str = "r",
) -> xr.DataArray:
    """Model × model cosine similarity of the voxelwise test scores, non-significant voxels set to 0.

    For each model, the vector over voxels of its test Pearson r (``variable``), with voxels that
    are not significant for that model set to 0; similarity = cosine between the vectors. Given
    several subjects, the result is the mean of their matrices (NaN-aware: a model with no
    significant voxel in one subject is averaged over the others). Build the dendrogram with
    ``nt.rsa.linkage(similarity)`` and draw it with ``nt.plotting.plot_dendrogram`` /
    ``nt.plotting.compare_trees(rsa_sim, brain_sim)``.

    Parameters
    ----------
    results : xarray.Dataset, or sequence of (results, significance) pairs
        An encoding fit with ``r (model, voxel)``; or one pair per subject.
    significance : xarray.Dataset or xarray.DataArray, dims (model, voxel), optional
        A :func:`permutation_test` result (its ``significant``) or a boolean mask. None keeps all voxels.
    variable : str
        The score to compare (``"r"`` as in Neural Taskonomy, or ``"r2"``).

    Returns
    -------
    xarray.DataArray, dims (model, model_)
        Cosine similarity; NaN for a model without any significant voxel. Computes (small).

    Examples
    --------
    >>> tsim = nt.stats.task_similarity(fit, perm)                                  # doctest: +SKIP
    >>> tsim = nt.stats.task_similarity([(fit1, perm1), (fit2, perm2)])             # doctest: +SKIP
    """
    if isinstance(results, xr.Dataset):
        subjects = [(results, significance)]
    else:
        subjects = list(results)
        if not subjects or not all(isinstance(s, tuple) and len(s) == 2 for s in subjects):
            raise TypeError(
                "results must be an encoding-fit Dataset or a sequence of (results, significance) pairs, "
                "one per subject."
            )
        if significance is not None:
            raise TypeError("pass significance inside the (results, significance) pairs when giving several subjects")
    models = np.asarray(subjects[0][0]["model"].values)
    matrices = []
    for subject_results, subject_significance in subjects:
        vectors = _masked_vectors(subject_results, subject_significance, variable)
        missing = sorted(set(models) - set(vectors["model"].values))
        if missing:
            raise ValueError(f"a subject's results lack models {missing}; all subjects need the same models")
        matrices.append(_cosine_similarity(vectors.sel(model=models).values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries (a model never significant) stay NaN
        mean = np.nanmean(np.stack(matrices), axis=0)
    return xr.DataArray(
        mean,
        dims=("model", "model_"),
        coords={"model": models, "model_": models},
        name="task_similarity",
        attrs={
            "long_name": "brain-derived task similarity",
            "method": f"cosine of significance-masked voxelwise {variable}",
            "n_subjects": len(subjects),
        },
    )
