"""``solver="direct"``: a sparse LU factorisation of each image's ``ℒ_α`` (SciPy's SuperLU), reused by every solve.

On a CUDA tensor the triangular solves run on the GPU with CuPy when it is installed
(``pip install smoothlab[gpu]``); otherwise on the CPU, with copies to and from the GPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from smoothlab.smoothing._operator import RegularisedLaplacian, factor_dtype

# a symmetric ordering and no pivoting: ℒ_α is symmetric positive definite
_SPLU_OPTIONS: dict[str, Any] = {
    "permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}
}


class DirectSolver:
    """One SuperLU factorisation per image and graph: ``factors[i][g]`` (SciPy's, or CuPy's on a GPU).

    Parameters
    ----------
    factors : list of lists
        ``B`` rows of ``G`` factorisations; :meth:`factorise` computes them.
    dtype, device : torch.dtype, torch.device
        Of the guide images, hence of the signals and the results.
    backend : str
        What computes the solves.
    """

    def __init__(self, factors: list[list[Any]], dtype: torch.dtype, device: torch.device, backend: str) -> None:
        self.factors = factors
        self.dtype = dtype
        self.device = device
        self.backend = backend

    @classmethod
    def factorise(cls, op: RegularisedLaplacian, *, stacklevel: int = 1) -> "DirectSolver":
        """Factorise every sparse ``ℒ_α`` of ``op``.

        ``stacklevel`` places the warning that CuPy is missing, on a CUDA tensor: 1 blames the
        caller of this method, 2 its caller, and so on.
        """
        import scipy.sparse.linalg as spla

        device, use_cupy = op.device, False
        if device.type == "cuda":
            try:
                import cupy  # noqa: F401
                import cupyx.scipy.sparse as csp
                import cupyx.scipy.sparse.linalg as cspla

                use_cupy = True
            except ImportError:
                warnings.warn(
                    "solver='direct' on a CUDA tensor without CuPy: factorising and solving on the CPU "
                    "with transfers; install smoothlab[gpu] for GPU solves or use solver='cg'.",
                    stacklevel=stacklevel + 1,
                )
        np_dtype = np.float32 if factor_dtype(op.dtype) == torch.float32 else np.float64
        factors = []
        with _cupy_device(device) if use_cupy else contextlib.nullcontext():
            for i in range(op.graph.batch_size):
                row = []
                for gi in range(op.graph.groups):
                    lap = op.sparse(i, gi).astype(np_dtype)
                    if use_cupy:  # factorised by SciPy on the host, L and U copied to this GPU
                        row.append(cspla.splu(csp.csc_matrix(lap), **_SPLU_OPTIONS))
                    else:
                        row.append(spla.splu(lap, **_SPLU_OPTIONS))
                factors.append(row)
        if use_cupy:
            backend = "direct: SuperLU factorisation on the CPU, CuPy triangular solves on the GPU"
        elif device.type == "cpu":
            backend = "direct: SciPy SuperLU on the CPU"
        else:
            backend = f"direct: SciPy SuperLU on the CPU, with transfers from and to {device}"
        return cls(factors, op.dtype, device, backend)

    def __getitem__(self, index: slice | torch.Tensor) -> "DirectSolver":
        """The factors of a subset of the images (a tensor index is copied to the host: the factors are a list)."""
        rows = self.factors[index] if isinstance(index, slice) else [self.factors[i] for i in index.cpu().tolist()]
        return DirectSolver(rows, self.dtype, self.device, self.backend)

    def solve(self, z: torch.Tensor) -> torch.Tensor:
        """``ℒ_α^-1 z`` per channel, one image at a time; ``z`` has ``C`` channels (or ``G``)."""
        if type(self.factors[0][0]).__module__.startswith("cupyx"):
            return self._solve_cupy(z)
        b, c, h, w = z.shape
        zn = z.detach().to("cpu", factor_dtype(self.dtype)).numpy()
        out = np.empty_like(zn)
        for i in range(b):
            if len(self.factors[i]) == 1:
                out[i] = self.factors[i][0].solve(np.ascontiguousarray(zn[i].reshape(c, -1).T)).T.reshape(c, h, w)
            else:
                for ch in range(c):
                    out[i, ch] = self.factors[i][ch].solve(zn[i, ch].reshape(-1)).reshape(h, w)
        return torch.from_numpy(out).to(device=self.device, dtype=self.dtype)

    def _solve_cupy(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`solve` with CuPy's triangular solves on the factors' GPU."""
        import cupy

        b, c, h, w = z.shape
        # on the factors' GPU and on torch's current stream, so that the solves are ordered
        # after the kernels that produced z and before those that read the result
        with _cupy_device(self.device):
            zc = cupy.from_dlpack(z.detach().to(factor_dtype(self.dtype)).contiguous())
            out = cupy.empty_like(zc)
            for i in range(b):
                if len(self.factors[i]) == 1:
                    out[i] = self.factors[i][0].solve(zc[i].reshape(c, -1).T).T.reshape(c, h, w)
                else:
                    for ch in range(c):
                        out[i, ch] = self.factors[i][ch].solve(zc[i, ch].reshape(-1)).reshape(h, w)
            res = torch.from_dlpack(out)
        return res.to(self.dtype)


@contextlib.contextmanager
def _cupy_device(device: torch.device) -> Iterator[None]:
    """CuPy's current device and stream set to ``device`` and torch's current stream on it.

    CuPy allocates on its own current device (GPU 0 by default) and runs on its own stream: without
    this, factors and solves for a tensor on ``cuda:1`` would land on GPU 0, and a solve could
    read ``z`` before the torch kernel writing it had finished.
    """
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(index).cuda_stream)
        with stream:
            yield

