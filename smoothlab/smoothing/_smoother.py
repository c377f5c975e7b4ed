"""The :class:`Smoother` front: ``s_α`` (eq. 8), ``ŝ_α`` (eq. 9) and its adjoint gradient (eq. 19).

A :class:`Smoother` holds the graph, ``s_α(1)`` and one solver object (``_dense``, ``_direct``,
``_block`` or ``_cg``), built from the batch's ``ℒ_α`` (``_operator``).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol

import torch

from smoothlab._validation import check_choice, check_images, check_int, check_range
from smoothlab.graph import ImageGraph, image_graph
from smoothlab.smoothing._block import BLOCK_MAX_SIDE, BlockSolver
from smoothlab.smoothing._cg import CG_CHUNK_BYTES_CPU, CGInfo, CGSolver
from smoothlab.smoothing._dense import DenseSolver
from smoothlab.smoothing._direct import DirectSolver
from smoothlab.smoothing._operator import RegularisedLaplacian

#: The solver names of :class:`Smoother` (``solver=``), as a type.
Solver = Literal["auto", "dense", "direct", "cg", "block"]
#: The solver names of :class:`Smoother` (``solver=``).
SOLVERS: tuple[str, ...] = ("auto", "dense", "direct", "cg", "block")

#: On a GPU, ``solver="auto"`` takes ``dense`` up to this many pixels per image and ``cg`` above.
DENSE_AUTO_MAX_PIXELS = 1024
#: ``solver="auto"`` on the CPU picks ``"block"`` for images whose short side is at most this.
BLOCK_AUTO_MAX_SIDE = 32


class _LinearSolver(Protocol):
    """What :class:`Smoother` needs of a solver: ``ℒ_α^-1 z``, a sub-batch, a description."""

    backend: str

    def solve(self, z: torch.Tensor) -> torch.Tensor: ...

    def __getitem__(self, index: slice | torch.Tensor) -> "_LinearSolver": ...


class _IdentitySolver:
    """``α = 0``: ``ℒ_0 = I``, every solver reduces to a copy."""

    backend = "identity (alpha = 0)"

    def solve(self, z: torch.Tensor) -> torch.Tensor:
        return z.clone()

    def __getitem__(self, index: slice | torch.Tensor) -> "_IdentitySolver":
        return self


class _NormalisedSmoothing(torch.autograd.Function):
    """``ŝ_α(z)`` with the exact adjoint backward ``ℒ_α^-1 (g / s_α(1))`` (eq. 19)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, smoother: "Smoother") -> torch.Tensor:  # type: ignore[override]
        ctx.smoother = smoother
        return smoother._solve(z) / smoother.ones_response

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        s = ctx.smoother
        return s._solve(grad / s.ones_response), None


class Smoother:
    """Laplacian smoothing guided by a batch of images ``x`` (eqs. 5-9, 17-19).

    Parameters
    ----------
    x : torch.Tensor
        Guide images ``(B, C, H, W)`` in ``[0, 1]`` (``x_o`` in the paper). Signals smoothed
        later must have the same shape, dtype and device.
    alpha : float
        ``α ∈ [0, 1)``: 0 is the identity, values near 1 a strong low-pass (paper: 0.95 on
        MNIST, 0.997 on ImageNet).
    solver : {"auto", "dense", "direct", "cg", "block"}
        See the docstring of :mod:`smoothlab.smoothing`; ``auto`` picks ``block`` on the CPU for images whose short side
        is at most 32 pixels (MNIST) and ``direct`` above; on a GPU ``dense`` up to 1,024 pixels,
        ``cg`` above.
    tol, max_iter, check_every, x0
        CG settings: relative-residual tolerance (0 = run exactly ``max_iter`` iterations),
        iteration cap, how often convergence is checked, initial guess (zeros, or the
        right-hand side as in the authors' code).
    backward : {"adjoint", "unrolled"}
        Gradient of :meth:`__call__`: one extra solve (default), or autodiff through the CG
        iterations (``solver="cg"`` only).
    dense_max_pixels : int
        Largest image (``H·W``) the dense solver accepts.
    cg_chunk_bytes : int, None or "auto"
        CG solves the batch in chunks of images whose vectors fit in this many bytes, so that
        they stay in cache across the ~20 passes of an iteration; ``"auto"``: 16 MiB on the
        CPU, no chunking on a GPU. Results do not depend on it (each system is independent).
    neighbours, kernel, lam, colour, spatial_sigma
        Graph options, passed to :func:`smoothlab.graph.image_graph`. ``spatial_sigma`` only
        matters with ``neighbours=8``: with 4 neighbours every edge has the same length, the
        spatial kernel is one constant factor of ``W`` and cancels out in ``D^-1/2 W D^-1/2``.

    Attributes
    ----------
    graph : ImageGraph
    ones_response : torch.Tensor
        ``s_α(1)``, shape ``(B, G, H, W)``, the normaliser of eq. (9).
    backend : str
        What actually computes the solves, e.g. ``"direct: scipy SuperLU on the CPU"``.
    setup_seconds : float
        Wall time of the one-off set-up (graph, factorisation, ``s_α(1)``).
    last_cg_info : CGInfo or None
        Iterations and residuals of the latest CG solve.
    alpha, solver, backward, tol, max_iter, check_every, x0, cg_chunk_bytes
        The settings it was built with (``solver`` resolved from ``"auto"``).

    Examples
    --------
    Build once per batch of guide images, then apply ``ŝ_α`` (eq. 9) as often as needed:

    >>> import torch
    >>> from smoothlab import Smoother
    >>> x = torch.rand(2, 1, 28, 28)
    >>> S = Smoother(x, alpha=0.95)
    >>> S
    Smoother(batch=2, channels=1, size=28x28, alpha=0.95, solver='block', kernel='laplacian', lam=10.0, colour='joint', neighbours=4)
    >>> z = torch.randn_like(x, requires_grad=True)
    >>> r = S(z)                                    # smooth like x, differentiable (eq. 19)
    >>> r.shape, bool(r.std() < z.std())
    (torch.Size([2, 1, 28, 28]), True)
    >>> bool(torch.allclose(S(torch.ones_like(x)), torch.ones_like(x), atol=1e-4))  # ŝ_α(1) = 1
    True
    """

    def __init__(
        self,
        x: torch.Tensor,
        alpha: float = 0.95,
        solver: Solver = "auto",
        *,
        tol: float = 1e-5,
        max_iter: int = 1000,
        check_every: int = 10,
        x0: Literal["zeros", "rhs"] = "zeros",
        backward: Literal["adjoint", "unrolled"] = "adjoint",
        dense_max_pixels: int = 4096,
        cg_chunk_bytes: int | None | Literal["auto"] = "auto",
        neighbours: int = 4,
        kernel: str = "laplacian",
        lam: float = 10.0,
        colour: str = "joint",
        spatial_sigma: float | None = None,
    ) -> None:
        t0 = time.perf_counter()
        check_images(x, "x")
        self.alpha = check_range(alpha, "alpha", 0.0, 1.0, high_open=True)
        solver = check_choice(solver, "solver", SOLVERS)
        self.backward, cg_options = _check_cg_options(x, tol, max_iter, check_every, x0, backward, cg_chunk_bytes)
        # the settings stay readable (S.tol, S.max_iter, ...) whatever the solver
        self.tol, self.max_iter = cg_options["tol"], cg_options["max_iter"]
        self.check_every, self.x0 = cg_options["check_every"], cg_options["x0"]
        self.cg_chunk_bytes: int | None = cg_options["chunk_bytes"]
        dense_max_pixels = check_int(dense_max_pixels, "dense_max_pixels", minimum=1)
        self.solver: str = _pick_solver(solver, x, dense_max_pixels, self.backward)
        self.shape = tuple(x.shape)
        self.dtype = x.dtype
        self.device = x.device
        self.graph: ImageGraph = image_graph(
            x, neighbours=neighbours, kernel=kernel, lam=lam, colour=colour, spatial_sigma=spatial_sigma
        )
        op = RegularisedLaplacian(self.graph, self.alpha)
        self._solver: _LinearSolver = _build_solver(self.solver, op, cg_options)
        with torch.no_grad():
            self.ones_response = self._solve(x.new_ones(x.shape[0], self.graph.groups, *x.shape[-2:]))
        self.setup_seconds = time.perf_counter() - t0

    def _solve(self, z: torch.Tensor) -> torch.Tensor:
        """``ℒ_α^-1 z`` per channel, no checks. ``z`` has ``C`` channels, or ``G`` for ``s_α(1)``."""
        return self._solver.solve(z)

    def _check_signal(self, z: Any, name: str = "z") -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if tuple(z.shape) != self.shape:
            raise ValueError(f"{name} must have the shape of the guide images {self.shape}, got {tuple(z.shape)}")
        if z.dtype != self.dtype:
            raise TypeError(f"{name} must have the guide images' dtype {self.dtype}, got {z.dtype}")
        if z.device != self.device:
            raise ValueError(f"{name} must be on the guide images' device {self.device}, got {z.device}")
        return z

    @property
    def backend(self) -> str:
        """What actually computes the solves, e.g. ``"direct: SciPy SuperLU on the CPU"``."""
        return self._solver.backend

    @property
    def last_cg_info(self) -> CGInfo | None:
        """Iterations and residuals of the latest CG solve (``None`` before one, and for other solvers)."""
        return getattr(self._solver, "last_info", None)

    def solve(self, z: torch.Tensor) -> torch.Tensor:
        """``s_α(z) = ℒ_α^-1 z`` (eq. 8), per channel, for the whole batch (not differentiable)."""
        self._check_signal(z)
        with torch.no_grad():
            return self._solve(z.detach())

    def __call__(self, z: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
        """``ŝ_α(z) = diag(s_α(1))^-1 s_α(z)`` (eq. 9), differentiable in ``z``.

        ``check_finite=False`` skips the NaN/Inf check (a host synchronisation) for hot loops.
        A zero ``z`` gives zeros; ``ŝ_α(1) = 1``.
        """
        self._check_signal(z)
        if check_finite and not bool(torch.isfinite(z).all()):
            raise ValueError("z must be finite, got NaN or Inf values")
        if self.backward == "unrolled":
            return self._solve(z) / self.ones_response
        return _NormalisedSmoothing.apply(z, self)

    def __getitem__(self, index: slice | torch.Tensor | list[int] | int) -> "Smoother":
        """The smoother of a subset of the images (no recomputation).

        ``index`` is an int, a slice, a list of ints, or a long or bool tensor on any device (an
        attack's mask of the images still running lives on the images' device, while the sparse
        factors of ``solver="direct"`` are host objects). Repeated indices are allowed.
        """
        index = _batch_index(index, self.shape[0], self.device)
        new = object.__new__(Smoother)
        new.__dict__.update(self.__dict__)
        new.graph = self.graph[index]
        new.ones_response = self.ones_response[index]
        new._solver = self._solver[index]
        new.shape = (new.graph.batch_size,) + self.shape[1:]
        return new

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        b, c, h, w = self.shape
        return (
            f"Smoother(batch={b}, channels={c}, size={h}x{w}, alpha={self.alpha}, solver={self.solver!r}, "
            f"kernel={self.graph.kernel!r}, lam={self.graph.lam}, colour={self.graph.colour!r}, "
            f"neighbours={2 * len(self.graph.offsets)})"
        )


def _check_cg_options(
    x: torch.Tensor, tol: float, max_iter: int, check_every: int, x0: str, backward: str, cg_chunk_bytes: Any
) -> tuple[str, dict[str, Any]]:
    """Check the CG settings and the ``backward`` mode (which only CG can unroll); return
    ``backward`` and the keyword arguments of :class:`CGSolver`."""
    options: dict[str, Any] = {
        "tol": check_range(tol, "tol", 0.0, None),
        "max_iter": check_int(max_iter, "max_iter", minimum=1),
        "check_every": check_int(check_every, "check_every", minimum=1),
        "x0": check_choice(x0, "x0", ("zeros", "rhs")),
    }
    backward = check_choice(backward, "backward", ("adjoint", "unrolled"))
    if cg_chunk_bytes == "auto":
        cg_chunk_bytes = CG_CHUNK_BYTES_CPU if x.device.type == "cpu" else None
    elif cg_chunk_bytes is not None:
        cg_chunk_bytes = check_int(cg_chunk_bytes, "cg_chunk_bytes", minimum=1)
    options["chunk_bytes"] = cg_chunk_bytes
    return backward, options


def _pick_solver(solver: str, x: torch.Tensor, dense_max_pixels: int, backward: str) -> str:
    """``solver="auto"`` resolved by device and image size; check the choice fits the images."""
    n = x.shape[-1] * x.shape[-2]
    side = min(x.shape[-2:])
    if solver == "auto":
        if x.device.type == "cpu":
            solver = "block" if side <= BLOCK_AUTO_MAX_SIDE else "direct"
        else:
            solver = "dense" if n <= DENSE_AUTO_MAX_PIXELS else "cg"
    if solver == "block" and side > BLOCK_MAX_SIDE:
        raise ValueError(
            f"solver='block' stores dense blocks of the image's short side and is limited to a short side of "
            f"{BLOCK_MAX_SIDE} pixels; got an image of {x.shape[-2]}x{x.shape[-1]}. Use solver='direct' or 'cg'."
        )
    if solver == "dense" and n > dense_max_pixels:
        raise ValueError(
            f"solver='dense' inverts an n x n matrix per image and is limited to "
            f"dense_max_pixels={dense_max_pixels} pixels; got an image of {x.shape[-2]}x{x.shape[-1]} "
            f"= {n} pixels. Use solver='direct' or 'cg'."
        )
    if backward == "unrolled" and solver != "cg":
        raise ValueError(f"backward='unrolled' needs solver='cg', got solver={solver!r}")
    return solver


def _build_solver(solver: str, op: RegularisedLaplacian, cg_options: dict[str, Any]) -> _LinearSolver:
    """The solver's one-off work (dense inverse, sparse or block factorisation) on ``op``."""
    if op.alpha == 0.0:
        return _IdentitySolver()
    if solver == "dense":
        return DenseSolver.factorise(op)
    if solver == "direct":
        return DirectSolver.factorise(op, stacklevel=3)  # _build_solver <- Smoother.__init__ <- the caller
    if solver == "block":
        return BlockSolver.factorise(op)
    return CGSolver(op, **cg_options)


def _batch_index(index: Any, size: int, device: torch.device) -> slice | torch.Tensor:
    """An index of a batch of ``size`` images as a slice, or a long tensor on ``device``.

    Tensors are moved to ``device`` (indexing a tensor with indices on another device fails on
    CUDA); a bool mask becomes the indices of its True entries.
    """
    if isinstance(index, bool) or not isinstance(index, (int, slice, list, tuple, torch.Tensor)):
        raise TypeError(f"index must be an int, a slice, a list of ints or a tensor, got {type(index).__name__}")
    if isinstance(index, int):
        if not -size <= index < size:
            raise IndexError(f"index {index} is out of range for a batch of {size} images")
        index %= size
        return slice(index, index + 1)
    if isinstance(index, slice):
        return index
    if not isinstance(index, torch.Tensor):
        index = torch.as_tensor(list(index), dtype=torch.long) if len(index) else torch.zeros(0, dtype=torch.long)
    if index.dtype.is_floating_point or index.dtype.is_complex:
        raise TypeError(f"index must hold integers or bools, got dtype {index.dtype}")
    index = index.to(device)
    if index.dtype == torch.bool:
        if index.shape != (size,):
            raise IndexError(f"a bool index must have shape ({size},), got {tuple(index.shape)}")
        return index.nonzero().reshape(-1)
    return index.to(torch.long).reshape(-1)
