"""``solver="dense"``: ``ℒ_α^-1`` precomputed by a Cholesky factorisation (eq. 8), one batched product per solve."""

from __future__ import annotations

import torch

from smoothlab.smoothing._operator import RegularisedLaplacian


class DenseSolver:
    """``ℒ_α^-1`` of every image and graph, ``(B, G, n, n)``: exact, memory ``B·G·n²``.

    Parameters
    ----------
    inverse : torch.Tensor
        ``ℒ_α^-1``, shape ``(B, G, n, n)``; :meth:`factorise` computes it.
    """

    def __init__(self, inverse: torch.Tensor) -> None:
        self.inverse = inverse

    @classmethod
    def factorise(cls, op: RegularisedLaplacian) -> "DenseSolver":
        """Invert every dense ``ℒ_α`` of ``op`` through its Cholesky factor."""
        chol = torch.linalg.cholesky(op.dense())
        return cls(torch.cholesky_inverse(chol))

    @property
    def backend(self) -> str:
        return f"dense: Cholesky inverse in torch on {self.inverse.device}"

    def __getitem__(self, index: slice | torch.Tensor) -> "DenseSolver":
        return DenseSolver(self.inverse[index])

    def solve(self, z: torch.Tensor) -> torch.Tensor:
        """``ℒ_α^-1 z`` per channel; ``z`` is ``(B, C, H, W)`` with ``C`` channels (or ``G``)."""
        inv = self.inverse
        b, c, h, w = z.shape
        n = h * w
        # ℒ_α^-1 is symmetric: rows zᵀ ℒ_α^-1 give (ℒ_α^-1 z)ᵀ, and a row-times-matrix product
        # streams the matrix in memory order (several times faster than matrix-times-column here)
        if inv.shape[1] == 1:
            return torch.bmm(z.reshape(b, c, n), inv[:, 0]).reshape(z.shape)
        return torch.matmul(z.reshape(b, c, 1, n), inv).reshape(z.shape)
