"""``solver="block"``: an exact block Cholesky factorisation of the block-tridiagonal ``ℒ_α``, in PyTorch."""

from __future__ import annotations

import torch

from smoothlab.smoothing._operator import RegularisedLaplacian, factor_dtype

#: The largest short side ``solver="block"`` accepts (its memory grows as ``H·W·min(H, W)``).
BLOCK_MAX_SIDE = 128


class BlockSolver:
    """The block Cholesky factors of every ``ℒ_α`` of a batch (see ``"block"`` in the package docstring).

    Parameters
    ----------
    blocks : tuple of torch.Tensor
        ``(P, QT, RT)``: ``P[k] = L_k^-1`` of shape ``(nb, B, G, m, m)``, ``QT[k-1] = (L_k^-1 M_k)ᵀ``
        and ``RT[k] = M_{k+1} L_k^-1``, ``(nb - 1, B, G, m, m)``, with ``nb`` block rows of ``m``
        pixels; :meth:`factorise` computes them.
    transposed : bool
        The blocks are columns of pixels (the image is wider than tall).
    dtype : torch.dtype
        Of the guide images, hence of the signals and the results.
    """

    def __init__(
        self, blocks: tuple[torch.Tensor, torch.Tensor, torch.Tensor], transposed: bool, dtype: torch.dtype
    ) -> None:
        self.blocks = blocks
        self.transposed = transposed
        self.dtype = dtype

    @classmethod
    def factorise(cls, op: RegularisedLaplacian) -> "BlockSolver":
        """Factorise ``op``'s blocks in float64; store the factors in :func:`factor_dtype` precision."""
        diag, low, transposed = op.blocks()
        b, g, nb, m, _ = diag.shape
        linv = torch.empty_like(diag)
        mblk = torch.zeros_like(low)
        eye = torch.eye(m, dtype=diag.dtype, device=diag.device).expand(b, g, m, m)
        for k in range(nb):
            dk = diag[:, :, k]
            if k:
                mk = low[:, :, k] @ linv[:, :, k - 1].transpose(-1, -2)  # M_k = A_{k,k-1} L_{k-1}^-T
                mblk[:, :, k] = mk
                dk = dk - mk @ mk.transpose(-1, -2)  # Schur complement, L_k L_kᵀ
            lk = torch.linalg.cholesky(dk)
            linv[:, :, k] = torch.linalg.solve_triangular(lk, eye, upper=False)
        qt = (linv[:, :, 1:] @ mblk[:, :, 1:]).transpose(-1, -2)
        rt = mblk[:, :, 1:] @ linv[:, :, :-1]
        dt = factor_dtype(op.dtype)
        blocks = tuple(t.to(dt).permute(2, 0, 1, 3, 4).contiguous() for t in (linv, qt, rt))
        return cls(blocks, transposed, op.dtype)  # type: ignore[arg-type]

    @property
    def backend(self) -> str:
        return f"block: block-tridiagonal Cholesky in torch on {self.blocks[0].device}"

    def __getitem__(self, index: slice | torch.Tensor) -> "BlockSolver":
        blocks = tuple(t[:, index].contiguous() for t in self.blocks)
        return BlockSolver(blocks, self.transposed, self.dtype)  # type: ignore[arg-type]

    def solve(self, z: torch.Tensor) -> torch.Tensor:
        """``ℒ_α^-1 z`` for the whole batch at once.

        In row vectors: ``yᵀ = bᵀ L^-ᵀ``, then ``xᵀ = yᵀ L^-1``.
        """
        p, qt, rt = self.blocks
        b, c, _, _ = z.shape
        nb, _, g, m, _ = p.shape
        r = c // g  # right-hand sides per system: the channels sharing one graph
        v = z.detach().transpose(-1, -2) if self.transposed else z.detach()
        rows = v.to(p.dtype).reshape(b, g, r, nb, m).permute(3, 0, 1, 2, 4).reshape(nb, b * g, r, m)
        pv = p.view(nb, b * g, m, m)
        y = torch.matmul(rows, pv.transpose(-1, -2))  # c_kᵀ = b_kᵀ L_k^-ᵀ, every block row at once
        qv = qt.view(nb - 1, b * g, m, m)
        for k in range(1, nb):  # y_k = c_k - (L_k^-1 M_k) y_{k-1}
            y[k].baddbmm_(y[k - 1], qv[k - 1], alpha=-1.0)
        u = torch.matmul(y, pv)  # d_kᵀ = y_kᵀ L_k^-1
        rv = rt.view(nb - 1, b * g, m, m)
        for k in range(nb - 2, -1, -1):  # x_k = d_k - L_k^-ᵀ M_{k+1}ᵀ x_{k+1}
            u[k].baddbmm_(u[k + 1], rv[k], alpha=-1.0)
        out = u.reshape(nb, b, g, r, m).permute(1, 2, 3, 0, 4).reshape(b, c, nb, m)
        if self.transposed:
            out = out.transpose(-1, -2)
        return out.to(self.dtype).contiguous()
