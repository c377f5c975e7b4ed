"""Laplacian smoothing guided by an image: ``s_α`` (eq. 8) and ``ŝ_α`` (eq. 9), with its gradient (eq. 19).

``ℒ_α = (I - α 𝒲) / (1 - α)`` with ``𝒲 = D^-1/2 W D^-1/2`` (section 3) is symmetric positive
definite for ``α ∈ [0, 1)``; ``s_α(z) = ℒ_α^-1 z`` per channel and
``ŝ_α(z) = diag(s_α(1))^-1 s_α(z)``. A :class:`Smoother` is built once per batch of images
(graph, degrees, ``s_α(1)`` and any factorisation), then applied many times -- an attack calls
it at every iteration with the same image.

Four solvers:

``"dense"``
    ``ℒ_α^-1`` precomputed by a Cholesky factorisation, one batched matrix product per apply.
    Exact, and the fastest for small images (MNIST: ``n = 784``); memory ``B·G·n²``, so it is
    refused above ``dense_max_pixels`` pixels.
``"direct"``
    A sparse LU factorisation of each image's ``ℒ_α`` (SciPy's SuperLU with a symmetric
    ordering), computed once and reused by every apply. Exact. On a CUDA tensor it uses
    CuPy's GPU triangular solves when CuPy is installed (``pip install smoothlab[gpu]``);
    otherwise it solves on the CPU and copies to and from the GPU. :attr:`Smoother.backend`
    says which happened.
``"cg"``
    Batched, matrix-free conjugate gradient over all ``(image, channel)`` systems at once,
    in PyTorch on the device of ``x``. ``tol`` is on the relative residual; ``tol=0,
    max_iter=50`` reproduces the paper's truncated ImageNet setting.
``"block"``
    An exact block Cholesky factorisation of ``ℒ_α``, in PyTorch on the device of ``x``. With the
    pixels in row-major order (columns of the transposed image when it is wider than tall, so
    that a block is the short side ``m``), ``ℒ_α`` is block tridiagonal: one ``m x m`` block per
    row of pixels (4 and 8 neighbours alike). Its Cholesky factor has dense ``m x m`` blocks
    ``L_k`` on the diagonal and ``M_k`` below; the set-up stores ``L_k^-1``, ``(L_k^-1 M_k)ᵀ`` and
    ``M_{k+1} L_k^-1`` (factorised in double precision), and an apply is two batched matrix
    products plus two recurrences of one small batched product per block row -- over the whole
    batch at once, with no Python loop over the images. Memory ``3·B·G·H·W·m``; limited to a
    short side of :data:`BLOCK_MAX_SIDE` pixels.

``solver="auto"`` picks, on the CPU, ``block`` for images whose short side is at most
:data:`BLOCK_AUTO_MAX_SIDE` (MNIST) and ``direct`` above. At 28x28 batch 100 one exact solve took
about 2 ms with ``block`` against 7-8 ms with ``direct`` (a SuperLU solve per image) and 30 ms with
``dense`` (whose matrices, 246 MB for the batch, must stream from memory); a forward + backward
of ``ŝ_α`` on a loaded machine, interleaved: 21 ms (block), 31 (direct), 74 (CG to 1e-5), 121
(dense). At 299x299x3 one direct apply is about 3-10x faster than a converged CG
(``benchmarks/README.md``). On a GPU it picks ``dense`` up to 1,024 pixels (one batched matrix
product on the device) and ``cg`` above (matrix-free, stays on the device, no host round trip).
All exact solvers agree with ``dense`` to a relative error below ``1e-5`` in single precision
(``tests/test_smoothing.py``).

The gradient: ``ŝ_α`` is linear with Jacobian ``J = diag(s_α(1))^-1 ℒ_α^-1`` (eq. 19), so
``Jᵀ g = ℒ_α^-1 (g / s_α(1))``: one more solve with the same operator. That is the backward of a
custom autograd function, whose memory does not grow with the number of CG iterations.
``backward="unrolled"`` instead differentiates through the CG iterations (the paper's choice),
for comparison.

Truncated CG (``tol=0``, e.g. the paper's 50 iterations) computes a forward that is not ``ŝ_α``
exactly, and its adjoint backward (the formula of the exact operator, solved by the same truncated
CG) is not the derivative of what the forward computed. Both errors are measured
(``benchmarks/bench_fidelity.py adjoint``; 4 photos at 224x224x3, ``α = 0.997``, random signals):
at 50 iterations the forward is 3.3 % off the exact ``ŝ_α(z)``, the adjoint gradient 1.0 % off the
true derivative of the truncated forward (cosine 0.99995), and both gradients 3.4-3.5 % off the
exact one; at 100 iterations every error is below 0.1 %. What the truncation does to the attacks
(sC&W, sPGD2 on natural images) is in ``benchmarks/README.md``. The default keeps the adjoint:
its memory does not grow with the iterations, and its mismatch is a third of the truncation error
itself.

Layout: ``ℒ_α`` is built in one place, ``_operator.RegularisedLaplacian`` (one per batch, from the
graph and ``α``), which gives each solver its form -- the matrix-free product, the dense matrices,
one sparse matrix per image and graph, the block-tridiagonal blocks. One solver per module
(``_dense``, ``_direct``, ``_block``, ``_cg``), each with ``factorise`` (CG: its constructor),
``solve`` and sub-batching by ``[index]``; ``_smoother`` is the :class:`Smoother` front and the
autograd function of eq. (19); ``_spec`` holds :class:`SmoothingSpec` and :func:`resolve_smoother`.
"""

from smoothlab.smoothing._block import BLOCK_MAX_SIDE
from smoothlab.smoothing._cg import CG_CHUNK_BYTES_CPU, CGInfo, conjugate_gradient
from smoothlab.smoothing._smoother import BLOCK_AUTO_MAX_SIDE, DENSE_AUTO_MAX_PIXELS, SOLVERS, Smoother, Solver
from smoothlab.smoothing._spec import SmoothingSpec, resolve_smoother

__all__ = [
    "BLOCK_AUTO_MAX_SIDE",
    "BLOCK_MAX_SIDE",
    "CGInfo",
    "CG_CHUNK_BYTES_CPU",
    "DENSE_AUTO_MAX_PIXELS",
    "SOLVERS",
    "Smoother",
    "SmoothingSpec",
    "Solver",
    "conjugate_gradient",
    "resolve_smoother",
]
