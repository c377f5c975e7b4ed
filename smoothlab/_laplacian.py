"""The sparse assembly of ``ℒ_α = (I - α 𝒲) / (1 - α)`` (eqs. 6-7) from a sparse ``𝒲``.

The one piece of ``ℒ_α``'s arithmetic that two floors need: ``smoothing/_operator.py`` (floor 2,
the sparse form that ``solver="direct"`` factorises) and the public
``graph.ImageGraph.regularised_laplacian_scipy`` (floor 1), which may not import upwards. Every
other form of ``ℒ_α`` (dense, block tridiagonal, matrix-free) is built in
``smoothing/_operator.py``. SciPy is imported when called.
"""

from __future__ import annotations

from typing import Any


def regularised_laplacian_csc(normalised: Any, alpha: float) -> Any:
    """``(I - α 𝒲) / (1 - α)`` as a ``scipy.sparse.csc_matrix``, from ``𝒲`` as a sparse ``n x n`` matrix."""
    import scipy.sparse as sp

    n = normalised.shape[0]
    return ((sp.identity(n, format="csr") - alpha * normalised) / (1.0 - alpha)).tocsc()
