"""``ℒ_α = (I - α 𝒲) / (1 - α)`` with ``𝒲 = D^-1/2 W D^-1/2`` (eqs. 6-7), in every form a solver needs.

One :class:`RegularisedLaplacian` per batch of image graphs; each solver asks it for its form:
the matrix-free product (``cg``), the dense matrices (``dense``), one sparse matrix per image and
graph (``direct``) and the block-tridiagonal blocks (``block``). The sparse assembly itself is in
``smoothlab/_laplacian.py``, shared with the public ``ImageGraph.regularised_laplacian_scipy``.
"""

from __future__ import annotations

from typing import Any

import torch

from smoothlab._laplacian import regularised_laplacian_csc
from smoothlab.graph import ImageGraph, edge_slices


def factor_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of the stored factors for guides of ``dtype``: single for float32 and below
    (25 % faster solves), else double."""
    return torch.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float64


class RegularisedLaplacian:
    """``ℒ_α`` of a batch of image graphs (eqs. 6-7), never stored whole: each method builds one form.

    Parameters
    ----------
    graph : ImageGraph
        The graphs of the batch, ``G`` per image.
    alpha : float
        ``α ∈ [0, 1)``.
    """

    def __init__(self, graph: ImageGraph, alpha: float) -> None:
        self.graph = graph
        self.alpha = alpha

    @property
    def dtype(self) -> torch.dtype:
        return self.graph.normalised.dtype

    @property
    def device(self) -> torch.device:
        return self.graph.normalised.device

    def __getitem__(self, index: slice | torch.Tensor) -> "RegularisedLaplacian":
        """The operator of a subset of the images."""
        return RegularisedLaplacian(self.graph[index], self.alpha)

    def shifted_matvec(self, v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(1 - α) ℒ_α v = v - α 𝒲 v`` per channel, matrix-free (what CG solves with).

        ``out`` receives the result without an allocation; differentiable in ``v``.
        """
        return self.graph.matvec(v, shift=1.0, scale=-self.alpha, out=out)

    def dense(self) -> torch.Tensor:
        """``ℒ_α`` of every image and graph as dense matrices ``(B, G, n, n)``, ``n = H·W`` in row-major order."""
        gr = self.graph
        b, g = gr.batch_size, gr.groups
        h, w = gr.image_size
        n = h * w
        ids = torch.arange(n, device=self.device).view(h, w)
        lap = torch.zeros(b, g, n, n, dtype=self.dtype, device=self.device)
        for k, (dy, dx) in enumerate(gr.offsets):
            (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
            i, j = ids[py, px].reshape(-1), ids[qy, qx].reshape(-1)
            vals = gr.normalised[:, :, k, py, px].reshape(b, g, -1)
            lap[:, :, i, j] = -self.alpha * vals
            lap[:, :, j, i] = -self.alpha * vals
        lap.diagonal(dim1=-2, dim2=-1).fill_(1.0)
        lap /= 1.0 - self.alpha
        return lap

    def sparse(self, index: int, group: int) -> Any:
        """``ℒ_α`` of one image and graph as a ``scipy.sparse.csc_matrix`` (float64, row-major pixels)."""
        return regularised_laplacian_csc(self.graph.to_scipy(index, group, normalised=True), self.alpha)

    def blocks(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """``ℒ_α`` in float64 as block-tridiagonal blocks of ``m`` pixels, ``m`` the short side.

        Returns ``(diag, low, transposed)``: ``diag[:, :, k] = A_kk`` and ``low[:, :, k] = A_{k,k-1}``
        (``low[:, :, 0]`` is zero), both ``(B, G, nb, m, m)``; the block rows are rows of pixels,
        or columns (``transposed``) when the image is wider than tall. 4 and 8 neighbours alike
        couple only adjacent block rows.
        """
        gr = self.graph
        b, g = gr.batch_size, gr.groups
        h, w = gr.image_size
        transposed = w > h
        nb, m = (w, h) if transposed else (h, w)
        dev, f64 = self.device, torch.float64
        wn = gr.normalised.detach().to(f64)
        diag = torch.zeros(b, g, nb, m, m, dtype=f64, device=dev)  # A_kk
        low = torch.zeros(b, g, nb, m, m, dtype=f64, device=dev)  # A_{k,k-1} (low[:, :, 0] unused)
        ar = torch.arange(m, device=dev)
        diag[..., ar, ar] = 1.0
        for k, (dy, dx) in enumerate(gr.offsets):
            (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
            rp, cp = torch.meshgrid(torch.arange(h, device=dev)[py], torch.arange(w, device=dev)[px], indexing="ij")
            rq, cq = rp + dy, cp + dx
            val = -self.alpha * wn[:, :, k, py, px]
            # (block row, position in the block) of both ends of every edge of this offset
            (bp, pp), (bq, pq) = ((cp, rp), (cq, rq)) if transposed else ((rp, cp), (rq, cq))
            step = dx if transposed else dy
            if step == 0:
                diag[:, :, bp, pp, pq] = val
                diag[:, :, bp, pq, pp] = val
            else:
                if step < 0:
                    (bp, pp), (bq, pq) = (bq, pq), (bp, pp)
                low[:, :, bq, pq, pp] = val
        diag /= 1.0 - self.alpha
        low /= 1.0 - self.alpha
        return diag, low, transposed
