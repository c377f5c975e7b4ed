"""The image-guided graph of section 3 (eq. 5), stored matrix-free as a stencil.

One vertex per pixel, edges to the 4 or 8 nearest neighbours, weight
``w_ij = k_f(x_i, x_j) k_s(p_i, p_j)`` and no self loops. For a batch ``x`` of shape
``(B, C, H, W)`` the graph is kept as one weight map per neighbour offset: ``weights[:, :, k]``
holds, at pixel ``p``, the weight of the edge ``(p, p + offset_k)`` (zero where the neighbour
falls outside the image). Only the "forward" half of the offsets is stored; the matrix
``W`` is symmetric, so the other half is the same map read from the neighbour's side.
Nothing of size ``n x n`` is ever built except on request, for one image
(:meth:`ImageGraph.to_scipy`).

``colour="joint"`` (the paper) measures the feature distance on the whole colour vector, so
one graph (``G = 1``) serves every channel; ``colour="per-channel"`` (the authors' code)
builds one graph per channel (``G = C``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from smoothlab._laplacian import regularised_laplacian_csc
from smoothlab._repr import html_table, one_line
from smoothlab._validation import check_choice, check_images, check_positive

__all__ = ["OFFSETS", "ImageGraph", "condition_number_bound", "edge_slices", "image_graph"]

Kernel = Literal["laplacian", "gaussian"]
Colour = Literal["joint", "per-channel"]

#: Forward neighbour offsets ``(dy, dx)``; the backward ones are their negatives.
OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((0, 1), (1, 0)),
    8: ((0, 1), (1, 0), (1, 1), (1, -1)),
}


def edge_slices(dy: int, dx: int, h: int, w: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``(p, q)`` such that pixel ``p`` and its neighbour ``q = p + (dy, dx)`` line up."""
    p_y, q_y = slice(0, h - dy), slice(dy, h)
    if dx >= 0:
        p_x, q_x = slice(0, w - dx), slice(dx, w)
    else:
        p_x, q_x = slice(-dx, w), slice(0, w + dx)
    return (p_y, p_x), (q_y, q_x)


@dataclass(frozen=True, eq=False)
class ImageGraph:
    """Matrix-free image graph ``W`` (eq. 5), its degrees ``D = diag(W 1)`` and ``D^-1/2 W D^-1/2``.

    Attributes
    ----------
    weights : torch.Tensor
        ``(B, G, K, H, W)``: weight ``w_pq`` of the edge from ``p`` to ``p + offsets[k]``.
    normalised : torch.Tensor
        ``(B, G, K, H, W)``: the same edges of ``𝒲 = D^-1/2 W D^-1/2`` (section 3, "Filtering").
        A vertex with zero degree (isolated) gets zero normalised weights.
    degree : torch.Tensor
        ``(B, G, H, W)``: the diagonal of ``D``.
    offsets : tuple of (dy, dx)
        The stored forward offsets.

    Notes
    -----
    ``repr(graph)`` (and a notebook's display) is a one-line summary, never the weights.
    Graphs compare by identity (``==`` is ``is``).
    """

    weights: torch.Tensor
    normalised: torch.Tensor
    degree: torch.Tensor
    offsets: tuple[tuple[int, int], ...]
    kernel: str
    lam: float
    colour: str
    spatial_sigma: float | None

    @property
    def batch_size(self) -> int:
        return self.weights.shape[0]

    @property
    def groups(self) -> int:
        """Number of graphs per image: 1 for ``joint``, ``C`` for ``per-channel``."""
        return self.weights.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.weights.shape[-2], self.weights.shape[-1]

    def _summary(self) -> dict[str, Any]:
        h, w = self.image_size
        return {
            "batch": self.batch_size,
            "groups": self.groups,
            "size": f"{h}x{w}",
            "neighbours": 2 * len(self.offsets),
            "kernel": self.kernel,
            "lam": self.lam,
            "colour": self.colour,
            "spatial_sigma": self.spatial_sigma,
            "dtype": str(self.weights.dtype).removeprefix("torch."),
            "device": str(self.weights.device),
        }

    def __repr__(self) -> str:
        return one_line("ImageGraph", self._summary())

    def _repr_html_(self) -> str:
        return html_table("ImageGraph", self._summary())

    def __getitem__(self, index: slice | torch.Tensor | list[int] | int) -> "ImageGraph":
        """The graphs of a subset of the images of the batch."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        elif isinstance(index, torch.Tensor) and index.device != self.weights.device:
            index = index.to(self.weights.device)  # CUDA refuses indices from another device
        return replace(
            self,
            weights=self.weights[index],
            normalised=self.normalised[index],
            degree=self.degree[index],
        )

    def _check_signal(self, v: torch.Tensor, name: str) -> None:
        b, g, _, h, w = self.weights.shape
        if v.dim() != 4 or v.shape[0] != b or v.shape[-2:] != (h, w):
            raise ValueError(f"{name} must have shape ({b}, C, {h}, {w}), got {tuple(v.shape)}")
        if g > 1 and v.shape[1] != g:
            raise ValueError(
                f"{name} must have {g} channels (one per graph of colour='per-channel'), got {v.shape[1]}"
            )

    def matvec(
        self,
        v: torch.Tensor,
        *,
        normalised: bool = True,
        shift: float = 0.0,
        scale: float = 1.0,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``shift * v + scale * A v`` with ``A = 𝒲`` (default) or ``A = W``, per channel.

        ``v`` has shape ``(B, C, H, W)``; with ``G = 1`` the single graph serves every channel.
        ``out`` (same shape as ``v``, not aliasing it) receives the result without a new
        allocation. Differentiable in ``v`` (used by CG unrolled under autograd).
        """
        self._check_signal(v, "v")
        wts = self.normalised if normalised else self.weights
        h, w = self.image_size
        # out-of-place when autograd needs the graph of ops, in place otherwise
        grad = torch.is_grad_enabled() and v.requires_grad
        if grad or out is None:
            out = v * shift if shift != 0.0 else torch.zeros_like(v)
        elif shift == 1.0:
            out.copy_(v)
        else:
            torch.mul(v, shift, out=out)
        for k, (dy, dx) in enumerate(self.offsets):
            (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
            wk = wts[:, :, k, py, px]
            if grad:
                upd_p = torch.zeros_like(v)
                upd_p[..., py, px] = wk * v[..., qy, qx]
                upd_q = torch.zeros_like(v)
                upd_q[..., qy, qx] = wk * v[..., py, px]
                out = out + scale * (upd_p + upd_q)
            else:
                out[..., py, px].addcmul_(wk, v[..., qy, qx], value=scale)
                out[..., qy, qx].addcmul_(wk, v[..., py, px], value=scale)
        return out

    def smoothness(self, r: torch.Tensor) -> torch.Tensor:
        """Graph-smoothness energy ``tr(rᵀ (I - 𝒲) r) / ||r||²`` per image, shape ``(B,)``.

        This is the smoothness term of eq. (6) (and the penalty of eq. 14) divided by the
        energy of ``r``: 0 for a signal perfectly "smooth like x", up to 2 for the roughest
        one. An all-zero ``r`` gets 0 rather than 0/0.
        """
        self._check_signal(r, "r")
        lr = self.matvec(r, shift=1.0, scale=-1.0)
        num = (r * lr).flatten(1).sum(1)
        den = (r * r).flatten(1).sum(1)
        return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))

    def to_scipy(self, index: int = 0, group: int = 0, *, normalised: bool = False):
        """Export ``W`` (or ``𝒲``) of one image as a ``scipy.sparse.csr_matrix`` (float64).

        Vertices are numbered in row-major pixel order, ``i = row * W + col``, i.e. the order of
        ``x[index, c].flatten()``.
        """
        import scipy.sparse as sp

        b, g = self.batch_size, self.groups
        if not 0 <= index < b:
            raise ValueError(f"index must be in [0, {b}), got {index}")
        if not 0 <= group < g:
            raise ValueError(f"group must be in [0, {g}), got {group}")
        h, w = self.image_size
        ids = np.arange(h * w).reshape(h, w)
        wts = (self.normalised if normalised else self.weights)[index, group].detach().cpu().double().numpy()
        rows, cols, vals = [], [], []
        for k, (dy, dx) in enumerate(self.offsets):
            (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
            rows.append(ids[py, px].ravel())
            cols.append(ids[qy, qx].ravel())
            vals.append(wts[k][py, px].ravel())
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        n = h * w
        upper = sp.coo_matrix((v, (r, c)), shape=(n, n))
        return (upper + upper.T).tocsr()

    def regularised_laplacian_scipy(self, alpha: float, index: int = 0, group: int = 0):
        """``ℒ_α = (I - α 𝒲) / (1 - α)`` (eqs. 6-7) of one image as a ``scipy.sparse.csc_matrix`` (float64).

        The matrix that ``Smoother(..., solver="direct")`` factorises: both assemble it with
        ``smoothlab._laplacian.regularised_laplacian_csc``.
        """
        return regularised_laplacian_csc(self.to_scipy(index, group, normalised=True), alpha)


def image_graph(
    x: torch.Tensor,
    neighbours: int = 4,
    kernel: Kernel = "laplacian",
    lam: float = 10.0,
    colour: Colour = "joint",
    spatial_sigma: float | None = None,
) -> ImageGraph:
    """Build the graph of eq. (5) guided by a batch of images.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(B, C, H, W)`` with values in ``[0, 1]``; the graph inherits their dtype and device.
    neighbours : {4, 8}
        Connectivity of the pixel grid.
    kernel : {"laplacian", "gaussian"}
        Feature kernel ``k_f``: ``exp(-lam * ||x_i - x_j||)`` or ``exp(-lam * ||x_i - x_j||²)``.
    lam : float
        Kernel rate ``λ > 0`` (the paper uses 10 on MNIST with the Laplacian kernel, the
        authors 300 on ImageNet with the Gaussian kernel).
    colour : {"joint", "per-channel"}
        ``joint`` (eq. 5): distance on the colour vector, one graph per image.
        ``per-channel`` (authors' code): one graph per channel.
    spatial_sigma : float, optional
        Spatial kernel ``k_s = exp(-||p_i - p_j||² / (2 σ²))``; ``None`` (default) means
        ``k_s = 1`` on the neighbours, as in the authors' code. It only shapes the smoothing
        with ``neighbours=8`` (diagonal edges, ``||p_i - p_j||² = 2``, weigh less than axial
        ones): with 4 neighbours every edge has ``||p_i - p_j||² = 1``, so ``k_s`` multiplies
        all of ``W`` (and ``D``) by one constant ``exp(-1 / (2 σ²))`` that cancels out in
        ``D^-1/2 W D^-1/2`` (eq. 7) -- ``W`` and ``D`` change, ``ŝ_α`` does not.

    Returns
    -------
    ImageGraph
        Matrix-free ``W``, ``D`` and ``D^-1/2 W D^-1/2``.

    Examples
    --------
    >>> import torch
    >>> from smoothlab import image_graph
    >>> x = torch.rand(2, 3, 16, 16)                # two colour images
    >>> g = image_graph(x, neighbours=8)
    >>> g.weights.shape                             # (B, G, K, H, W): one map per forward offset
    torch.Size([2, 1, 4, 16, 16])
    >>> g
    ImageGraph(batch=2, groups=1, size='16x16', neighbours=8, kernel='laplacian', lam=10, colour='joint', spatial_sigma=None, dtype='float32', device='cpu')
    >>> W = g.to_scipy(0)                           # eq. (5) of the first image, 256 x 256, symmetric
    >>> W.shape, (W != W.T).nnz
    ((256, 256), 0)
    """
    check_images(x, "x")
    neighbours = check_choice(neighbours, "neighbours", (4, 8))
    kernel = check_choice(kernel, "kernel", ("laplacian", "gaussian"))
    colour = check_choice(colour, "colour", ("joint", "per-channel"))
    lam = check_positive(lam, "lam")
    if spatial_sigma is not None:
        spatial_sigma = check_positive(spatial_sigma, "spatial_sigma")

    x = x.detach()
    b, c, h, w = x.shape
    groups = 1 if colour == "joint" else c
    offsets = OFFSETS[neighbours]
    weights = x.new_zeros(b, groups, len(offsets), h, w)
    for k, (dy, dx) in enumerate(offsets):
        (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
        diff = x[..., py, px] - x[..., qy, qx]
        sq = diff.square().sum(1, keepdim=True) if colour == "joint" else diff.square()
        arg = lam * (sq.sqrt() if kernel == "laplacian" else sq)
        if spatial_sigma is not None:
            arg = arg + (dy * dy + dx * dx) / (2.0 * spatial_sigma**2)
        weights[:, :, k, py, px] = torch.exp(-arg)

    degree = x.new_zeros(b, groups, h, w)
    for k, (dy, dx) in enumerate(offsets):
        (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
        degree[..., py, px] += weights[:, :, k, py, px]
        degree[..., qy, qx] += weights[:, :, k, py, px]

    # w_pq / sqrt(d_p d_q) as sqrt(w/d_p) sqrt(w/d_q): each factor is in [0, 1], so no overflow
    # even where degrees underflow; an isolated vertex (d = 0, hence w = 0) gets 0.
    normalised = torch.zeros_like(weights)
    for k, (dy, dx) in enumerate(offsets):
        (py, px), (qy, qx) = edge_slices(dy, dx, h, w)
        wk = weights[:, :, k, py, px]
        dp, dq = degree[..., py, px], degree[..., qy, qx]
        ratio_p = torch.where(dp > 0, wk / torch.where(dp > 0, dp, torch.ones_like(dp)), torch.zeros_like(wk))
        ratio_q = torch.where(dq > 0, wk / torch.where(dq > 0, dq, torch.ones_like(dq)), torch.zeros_like(wk))
        normalised[:, :, k, py, px] = (ratio_p * ratio_q).sqrt()

    return ImageGraph(
        weights=weights,
        normalised=normalised,
        degree=degree,
        offsets=offsets,
        kernel=kernel,
        lam=lam,
        colour=colour,
        spatial_sigma=spatial_sigma,
    )


def condition_number_bound(alpha: float) -> float:
    """Upper bound ``(1 + α) / (1 - α)`` on the condition number of ``ℒ_α``.

    The eigenvalues of ``𝒲`` lie in ``[-1, 1]``, so those of ``I - α𝒲`` lie in
    ``[1 - α, 1 + α]``; CG needs ``O(sqrt(κ))`` iterations.
    """
    return (1.0 + alpha) / (1.0 - alpha) if alpha < 1 else math.inf
