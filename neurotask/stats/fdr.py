"""Benjamini–Hochberg step-up false discovery rate control (DESIGN §3)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["fdr_bh"]


def _bh_adjust(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values) along the last axis; NaNs are left out of the count.

    1. sort each row's finite p-values ascending;
    2. scale the i-th smallest (1-based) by m / i, m = number of finite p-values in the row;
    3. take the running minimum from the largest down (the step-up), clip at 1;
    4. put the values back in the original order.
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.reshape(-1, p.shape[-1]) if p.ndim else p.reshape(1, 1)
    adjusted = np.full(flat.shape, np.nan)
    for row, out in zip(flat, adjusted):
        finite = np.flatnonzero(np.isfinite(row))
        m = finite.size
        if m == 0:
            continue
        order = np.argsort(row[finite], kind="stable")
        scaled = row[finite][order] * m / np.arange(1, m + 1)
        stepped = np.minimum.accumulate(scaled[::-1])[::-1]
        out[finite[order]] = np.minimum(stepped, 1.0)
    return adjusted.reshape(p.shape)


def fdr_bh(
    p: xr.DataArray | np.ndarray, q: float = 0.05, *, dim: str = "voxel"
) -> tuple[xr.DataArray | np.ndarray, xr.DataArray | np.ndarray]:
    """Benjamini–Hochberg step-up FDR over one dim (voxels), separately for every other index.

    Equal to ``statsmodels.stats.multitest.multipletests(p, alpha=q, method="fdr_bh")`` for each
    model's row of p-values. NaN p-values (e.g. masked voxels) are not counted as tests and get NaN
    q-values and ``False``.

    Parameters
    ----------
    p : xarray.DataArray, dims (..., voxel), or numpy.ndarray (tests along the last axis)
        P-values in [0, 1].
    q : float
        The FDR level; a test is significant when its adjusted p-value is ≤ ``q``.
    dim : str
        The dim holding the tests (DataArray input only).

    Returns
    -------
    significant : same type as ``p``, bool
        Rejections at level ``q``.
    q_values : same type as ``p``, float64
        BH-adjusted p-values.

    Examples
    --------
    >>> import numpy as np
    >>> significant, q_values = fdr_bh(np.array([0.001, 0.01, 0.03, 0.5]), q=0.05)
    >>> significant.tolist()
    [True, True, True, False]
    """
    if not 0 < q < 1:
        raise ValueError(f"The 'q' parameter of fdr_bh must be a float in (0, 1). Got {q!r} instead.")
    if isinstance(p, xr.DataArray):
        if dim not in p.dims:
            raise ValueError(f"p has dims {p.dims}; expected a {dim!r} dim holding the tests (pass dim=...).")
        q_values = xr.apply_ufunc(
            _bh_adjust, p, input_core_dims=[[dim]], output_core_dims=[[dim]], dask="allowed"
        ).transpose(*p.dims)
        q_values.attrs = {"long_name": "BH-adjusted p-value", "method": "fdr_bh"}
        significant = (q_values <= q).rename("significant")
        significant.attrs = {"long_name": f"significant at FDR q={q}", "method": "fdr_bh", "q": q}
        return significant, q_values.rename("q")
    q_values = _bh_adjust(np.asarray(p))
    with np.errstate(invalid="ignore"):
        return q_values <= q, q_values
