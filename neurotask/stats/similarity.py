"""Brain-derived task similarity (Neural Taskonomy Fig. 6; DESIGN §3)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["task_similarity"]


def _cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity between rows; a zero row is 0 to every other row and 1 to itself."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt((vectors**2).sum(axis=1))
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 1.0)
    return similarity


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
    several subjects, the result is the mean of their matrices. A model without any
    significant voxel has a zero vector: its similarity is 0 to the other models and 1 to itself,
    in that subject's matrix. Such models are named in a ``RuntimeWarning`` and in attrs,
    so the mean and every dendrogram stay finite. Build the dendrogram with
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
        Cosine similarity, finite. Attrs: ``models_without_significant`` (models without any
        significant voxel in at least one subject), ``models_without_significant_by_subject``
        (JSON, one list per subject), ``n_subjects``. Computes (small).

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
    matrices, without = [], []
    for subject_results, subject_significance in subjects:
        vectors = _masked_vectors(subject_results, subject_significance, variable)
        missing = sorted(set(models) - set(vectors["model"].values))
        if missing:
            raise ValueError(f"a subject's results lack models {missing}; all subjects need the same models")
        values = vectors.sel(model=models).values
        without.append([str(m) for m in models[~values.any(axis=1)]])
        matrices.append(_cosine_similarity(values))
    flagged = [str(m) for m in models if any(str(m) in names for names in without)]
    if flagged:
        warnings.warn(
            f"models {flagged} have no significant voxel (in {sum(map(bool, without))} of {len(subjects)} "
            "subjects): their similarity there is 0 to the other models and 1 to themselves",
            RuntimeWarning,
            stacklevel=2,
        )
    mean = np.mean(np.stack(matrices), axis=0)
    return xr.DataArray(
        mean,
        dims=("model", "model_"),
        coords={"model": models, "model_": models},
        name="task_similarity",
        attrs={
            "long_name": "brain-derived task similarity",
            "method": f"cosine of significance-masked voxelwise {variable}",
            "n_subjects": len(subjects),
            "models_without_significant": flagged,
            "models_without_significant_by_subject": json.dumps(without),
        },
    )
