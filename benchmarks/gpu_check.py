"""The GPU check of issue 10: one prepared script, under 8 minutes on one H100, one Markdown report.

It covers, on ``--device`` (default ``cuda``):

1. the device-parametrised tests (``tests/test_devices.py`` and the device cases of
   ``tests/test_smoothing.py``), run by pytest: their summary line;
2. one CG iteration: time and achieved bandwidth as a fraction of the device's copy bandwidth
   measured in the same run (target >= 60 %), eager (the library's ``conjugate_gradient``) and a
   fused iteration through ``torch.compile``;
3. ``dense`` / ``direct`` (CuPy when it imports, else the CPU fallback, labelled) / ``block`` /
   ``cg`` (converged to 1e-5): set-up and forward + backward of ``ŝ_α`` at 28x28 and 224x224;
4. sC&W / C&W at 224x224 on the ImageNet model (``smoothlab.models.imagenet()``, EfficientNet-Lite0;
   the ImageNet sample under ``$SMOOTHLAB_DATA`` if present, else scikit-image photos labelled by
   the model itself), the paper's ImageNet settings, no early abort; the network in float32 and
   under bf16 autocast (the smoothing stays float32); P_suc / D̄ both ways (target ratio <= 1.3);
5. ``smoothlab bench --device cuda``: Table 1 on 1,000 ImageNet photos when the sample is there,
   else on the 1,000 embedded MNIST digits, with what is left of the time limit.

Every section catches its own errors (the report says what failed) and the script never reports
a number it did not measure. ``--dry-run`` runs the same logic on the CPU with tiny sizes in
seconds (``tests/test_gpu_check.py`` runs it, so that the script cannot rot).

    python benchmarks/gpu_check.py --out "$OUT/gpu_check.md"        # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --device cpu              # the logic, on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# benchmarks/_timing.py: this folder on sys.path however the script is started (a test loads it by path)
sys.path.insert(0, os.fspath(Path(__file__).resolve().parent))
from _timing import copy_bandwidth, timed, timed_rounds, timeit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Config:
    """Sizes and budgets of one run; :meth:`dry` is the CPU dry run."""

    device: str = "cuda"
    time_limit: float = 450.0  # seconds for the whole script (the bench gets what is left)
    repeats: int = 5
    pytest_args: tuple[str, ...] = ("tests/test_devices.py",)
    cg_shapes: tuple[tuple[int, int, int, int], ...] = ((100, 1, 28, 28), (32, 3, 224, 224))
    cg_iterations: int = 50
    compile: bool = True
    apply_shapes: tuple[tuple[str, tuple[int, int, int, int]], ...] = (
        ("28x28x1", (100, 1, 28, 28)),
        ("224x224x3", (16, 3, 224, 224)),
    )
    attack_images: int = 32
    attack_size: int = 224
    attack_iterations: int = 100
    attack_repeats: int = 3
    pretrained: bool = True
    bench_images: int = 1000
    bench_quick: bool = False
    min_bench_seconds: float = 60.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def dry(cls, device: str = "cpu") -> "Config":
        return cls(
            device=device,
            time_limit=300.0,
            repeats=2,
            pytest_args=("tests/test_devices.py", "-k", "fake_index_refuses"),
            cg_shapes=((4, 1, 12, 12), (2, 3, 16, 16)),
            cg_iterations=5,
            compile=False,
            apply_shapes=(("12x12x1", (4, 1, 12, 12)), ("40x40x3", (2, 3, 40, 40))),
            attack_images=2,
            attack_size=32,
            attack_iterations=1,
            attack_repeats=1,
            pretrained=False,
            bench_images=2,
            bench_quick=True,
            min_bench_seconds=120.0,
            dry_run=True,
        )


class Report:
    """Markdown lines, printed as they come and kept for the file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self("| " + " | ".join(header) + " |")
        self("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            self("| " + " | ".join(str(v) for v in r) + " |")
        self()

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[None]:
        self(f"## {title}")
        self()
        t0 = time.perf_counter()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - a failed section is reported, the others still run
            self(f"**FAILED**: `{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}`")
            self()
            self("```")
            for line in traceback.format_exc().splitlines()[-8:]:
                self(line)
            self("```")
            self()
        self(f"_section time: {time.perf_counter() - t0:.1f} s_")
        self()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def ms(t: float) -> str:
    return f"{t * 1e3:.3f}" if t < 0.01 else f"{t * 1e3:.1f}"


# ---------------------------------------------------------------------------- 0. machine
def machine(rep: Report, cfg: Config) -> None:
    dev = torch.device(cfg.device)
    rep(f"- host: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPU cores), Python {platform.python_version()}")
    rep(f"- torch {torch.__version__}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        rep(f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, {torch.cuda.device_count()} GPU(s)")
    else:
        rep(f"- device: {cfg.device} (no GPU numbers in this report)")
    for mod in ("cupy", "dask_cuda", "distributed"):
        try:
            m = __import__(mod)
            rep(f"- {mod} {getattr(m, '__version__', '?')}")
        except Exception as exc:  # noqa: BLE001
            rep(f"- {mod}: not available ({type(exc).__name__})")
    if hasattr(os, "getloadavg"):
        rep(f"- load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if cfg.dry_run:
        rep("- **dry run**: tiny sizes, the logic only; these numbers mean nothing")
    rep()


# ---------------------------------------------------------------------------- 1. tests
def run_tests(rep: Report, cfg: Config, timeout: float) -> None:
    # -o addopts=: the project's addopts name nbval and doctest options a bare GPU image may lack
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:randomly", "-p", "no:cacheprovider", *cfg.pytest_args]
    rep(f"`{' '.join(cmd[1:])}` (timeout {timeout:.0f} s)")
    rep()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        rep(f"**timed out** after {timeout:.0f} s")
        rep()
        return
    out = (proc.stdout + proc.stderr).strip().splitlines()
    summary = [ln for ln in out if re.search(r"\d+ (passed|failed|error|skipped|deselected)", ln)]
    rep(f"exit code {proc.returncode}: **{summary[-1].strip('= ') if summary else (out[-1] if out else 'no output')}**")
    failed = [ln for ln in out if ln.startswith(("FAILED", "ERROR"))]
    if failed:
        rep()
        rep("```")
        for ln in failed[:20]:
            rep(ln)
        rep("```")
    rep()


# ---------------------------------------------------------------------------- 2. CG bandwidth
def _graph_images(shape: tuple[int, int, int, int], device: torch.device) -> torch.Tensor:
    """Piecewise-smooth test images (flat regions and edges, like photos or digits), seeded."""
    b, c, h, w = shape
    g = torch.Generator().manual_seed(0)
    base = torch.rand(b, c, max(2, h // 8), max(2, w // 8), generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="nearest")
    return (0.9 * x + 0.1 * torch.rand(b, c, h, w, generator=g)).clamp(0, 1).to(device)


def eager_iteration_bytes(shape: tuple[int, ...], groups: int, k: int) -> float:
    """Bytes the kernels of one library CG iteration read and write (as in bench_smoothing.py)."""
    b, c, h, w = shape
    n_sig, n_w = b * c * h * w, b * groups * h * w
    elems = 2 * n_sig + 2 * k * (3 * n_sig + n_w)  # matvec: copy, 2 fused multiply-adds per offset
    elems += 3 * n_sig  # dots p.Ap, r.r
    elems += 11 * n_sig  # x, r, p updates
    return elems * 4.0


def minimal_iteration_bytes(shape: tuple[int, ...], groups: int, k: int) -> float:
    """Bytes a fully fused iteration cannot avoid: the weights once, x, r, p read and written once."""
    b, c, h, w = shape
    return (k * b * groups * h * w + 6 * b * c * h * w) * 4.0


def fused_cg_iteration(alpha: float) -> Callable[..., tuple[torch.Tensor, ...]]:
    """One CG iteration for ``(I - α 𝒲) u = b`` with 4 neighbours, written as one function for
    ``torch.compile`` to fuse: matvec, both dot products and the three updates."""
    import torch.nn.functional as F

    def step(x: torch.Tensor, r: torch.Tensor, p: torch.Tensor, rr: torch.Tensor, wh: torch.Tensor, wv: torch.Tensor):
        hp = wh[..., :-1] * p[..., 1:]
        hq = wh[..., :-1] * p[..., :-1]
        vp = wv[..., :-1, :] * p[..., 1:, :]
        vq = wv[..., :-1, :] * p[..., :-1, :]
        wp = F.pad(hp, (0, 1)) + F.pad(hq, (1, 0)) + F.pad(vp, (0, 0, 0, 1)) + F.pad(vq, (0, 0, 1, 0))
        ap = p - alpha * wp
        pap = (p * ap).sum(dim=(2, 3), keepdim=True)
        a = rr / pap
        x = x + a * p
        r = r - a * ap
        rr_new = (r * r).sum(dim=(2, 3), keepdim=True)
        p = r + (rr_new / rr) * p
        return x, r, p, rr_new

    return step


def cg_bandwidth(rep: Report, cfg: Config) -> None:
    from smoothlab import Smoother
    from smoothlab.smoothing import conjugate_gradient

    dev = torch.device(cfg.device)
    bw = copy_bandwidth(dev, cfg.repeats)
    rep(f"Copy bandwidth of this device (1 GiB tensor copy, read + write): **{bw / 1e9:.0f} GB/s**")
    rep()
    rows = []
    alpha = 0.997
    for shape in cfg.cg_shapes:
        x = _graph_images(shape, dev)
        S = Smoother(x, alpha, "cg", tol=0.0, max_iter=cfg.cg_iterations, lam=20.0)
        z = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dev)
        k = len(S.graph.offsets)

        def op(v: torch.Tensor, out: torch.Tensor | None = None, g: Any = S.graph) -> torch.Tensor:
            return g.matvec(v, shift=1.0, scale=-alpha, out=out)

        n = cfg.cg_iterations
        t_eager = timeit(lambda: conjugate_gradient(op, z, tol=0.0, max_iter=n), dev, cfg.repeats) / n
        eb = eager_iteration_bytes(shape, S.graph.groups, k)
        mb = minimal_iteration_bytes(shape, S.graph.groups, k)
        label = "x".join(map(str, shape[1:][::-1])) + f" x {shape[0]}"
        rows.append([f"{label}, eager", ms(t_eager), f"{eb / t_eager / 1e9:.0f} GB/s ({100 * eb / t_eager / bw:.0f} %)",
                     f"{mb / t_eager / 1e9:.0f} GB/s ({100 * mb / t_eager / bw:.0f} %)"])
        if not cfg.compile:
            rows.append([f"{label}, torch.compile", "skipped (dry run)", "", ""])
            continue
        try:
            wh, wv = S.graph.normalised[:, :, 0], S.graph.normalised[:, :, 1]
            step = torch.compile(fused_cg_iteration(alpha), dynamic=False)
            r0 = z.clone()
            state0 = (torch.zeros_like(z), r0, r0.clone(), (r0 * r0).sum(dim=(2, 3), keepdim=True))

            def fused(state=state0) -> tuple[torch.Tensor, ...]:
                s = state
                for _ in range(n):
                    s = step(*s, wh, wv)
                return s

            t_fused = timeit(fused, dev, cfg.repeats) / n
            u_ref, _ = conjugate_gradient(op, z, tol=0.0, max_iter=n)
            err = float((fused()[0] - u_ref).norm() / u_ref.norm())
            rows.append([f"{label}, torch.compile (rel. diff {err:.1e})", ms(t_fused), "",
                         f"{mb / t_fused / 1e9:.0f} GB/s ({100 * mb / t_fused / bw:.0f} %)"])
        except Exception as exc:  # noqa: BLE001
            rows.append([f"{label}, torch.compile", f"failed: {type(exc).__name__}", "", ""])
    rep(f"One CG iteration (α = {alpha}, 4 neighbours, {cfg.cg_iterations} fixed iterations timed, median of {cfg.repeats}); "
        "bandwidth counted two ways: the bytes the library's kernels move as implemented, and the bytes a fully "
        "fused iteration cannot avoid (weights once, x, r, p read and written once). Target: >= 60 % of copy bandwidth.")
    rep()
    rep.table(["iteration", "ms / iteration", "as implemented", "minimal bytes"], rows)


# ---------------------------------------------------------------------------- 3. solver applies
def solver_applies(rep: Report, cfg: Config) -> None:
    from smoothlab import Smoother

    dev = torch.device(cfg.device)
    rows = []
    for name, shape in cfg.apply_shapes:
        x = _graph_images(shape, dev)
        z = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dev)
        g = torch.randn(shape, generator=torch.Generator().manual_seed(3)).to(dev)
        ref = None
        for solver in ("dense", "block", "direct", "cg"):
            try:
                with warnings.catch_warnings(record=True):
                    warnings.simplefilter("always")
                    S, setup = timed(
                        lambda: Smoother(x, 0.997 if shape[1] == 3 else 0.95, solver, tol=1e-5, max_iter=5000), dev, 1
                    )
            except ValueError as exc:  # a solver refusing this size says so
                rows.append([name, solver, "n/a", "n/a", str(exc).split(";")[0][:80]])
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. a CuPy failure: the other solvers still run
                rows.append([name, solver, "failed", "", f"{type(exc).__name__}: {str(exc)[:100]}"])
                continue

            def fwd_bwd(S: Any = S) -> torch.Tensor:
                zz = z.clone().requires_grad_(True)
                out = S(zz, check_finite=False)
                out.backward(g)
                return out.detach()

            try:
                t = timeit(fwd_bwd, dev, cfg.repeats)
            except Exception as exc:  # noqa: BLE001
                rows.append([name, solver, f"{setup:.3f}", "failed", f"{S.backend}; {type(exc).__name__}: {str(exc)[:100]}"])
                continue
            out = fwd_bwd()
            if ref is None:
                ref = out
            err = float((out - ref).norm() / ref.norm())
            rows.append([name, solver, f"{setup:.3f}", ms(t), f"{S.backend}; rel. diff to the first {err:.1e}"])
    rep(f"Forward + backward of ŝ_α (two solves), median of {cfg.repeats}; α = 0.95 (1 channel) or 0.997 (3), CG to 1e-5. "
        "The last column compares each solver's result with the first one that ran at that size.")
    rep()
    rep.table(["size x batch", "solver", "set-up (s)", "fwd + bwd (ms)", "backend; agreement"], rows)


# ---------------------------------------------------------------------------- 4. sC&W / C&W
class Autocast(torch.nn.Module):
    """The network under bf16 autocast, float32 logits out; inputs (and the smoothing) stay float32."""

    def __init__(self, net: torch.nn.Module, device_type: str) -> None:
        super().__init__()
        self.net, self.device_type = net, device_type
        if hasattr(net, "input_size"):
            self.input_size = net.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(x).float()


def photos(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """``n`` photos at ``size``: the ImageNet sample under $SMOOTHLAB_DATA (labels) or scikit-image's
    photos (no labels: the model's own predictions are attacked)."""
    from smoothlab.data import imagenet_transform

    if os.environ.get("SMOOTHLAB_DATA"):
        try:
            from smoothlab.data import imagenet, imagenet_samples

            data = imagenet(imagenet_samples(download=False), size=size)
            idx = list(range(0, min(len(data), 10 * n), 10))[:n]
            x, y = data.batch(idx)
            return x, y, f"{len(idx)} photos of the ImageNet sample (every 10th)"
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"ImageNet sample not usable ({exc}); using scikit-image photos")
    from skimage import data as skd

    names = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "cat", "immunohistochemistry", "retina"]
    imgs = []
    for nm in names:
        try:
            imgs.append(imagenet_transform(getattr(skd, nm)(), size=size))
        except Exception:  # noqa: BLE001 - a photo missing from this scikit-image version
            continue
    x = torch.stack(imgs)
    x = x.repeat((n + len(imgs) - 1) // len(imgs), 1, 1, 1)[:n].contiguous()
    return x, None, f"{n} scikit-image photos ({len(imgs)} distinct, repeated), labelled by the model"


def attacks_224(rep: Report, cfg: Config) -> None:
    from smoothlab.attacks import cw, paper_settings, scw
    from smoothlab.models import imagenet

    dev = torch.device(cfg.device)
    net = imagenet(pretrained=cfg.pretrained, device=dev)
    x, y, what = photos(cfg.attack_images, cfg.attack_size)
    x = x.to(dev)
    with torch.no_grad():
        pred = net(x).argmax(1)
    y = pred if y is None else y.to(dev)
    kw_cw = {**paper_settings("cw", "imagenet"), "iterations": cfg.attack_iterations, "abort_early": False}
    kw_scw = {**paper_settings("scw", "imagenet"), "iterations": cfg.attack_iterations, "abort_early": False}
    if cfg.dry_run:
        kw_scw["smoother"] = dataclasses.replace(kw_scw["smoother"], max_iter=3)
    rep(f"{what}, {cfg.attack_size}x{cfg.attack_size}, EfficientNet-Lite0 ({'pretrained' if cfg.pretrained else 'random weights'}); "
        f"clean accuracy on these labels {float((pred == y).float().mean()):.2f}. Paper ImageNet settings (c = 100, margin 0, "
        f"lr 0.1, {cfg.attack_iterations} iterations, no early abort; sC&W: α = 0.997, 50 CG iterations), median of "
        f"{cfg.attack_repeats} alternating runs after a warm-up. Target: sC&W / C&W <= 1.3.")
    rep()
    rows = []
    for label, model in (("float32", net), ("bf16 autocast", Autocast(net, dev.type))):
        runs = {"C&W": lambda m=model: cw(m, x, y, **kw_cw), "sC&W": lambda m=model: scw(m, x, y, **kw_scw)}
        for fn in runs.values():  # warm-up (cuDNN autotuning, allocator)
            if not cfg.dry_run:
                fn()
        t, res = timed_rounds(runs, cfg.attack_repeats, dev)
        for k in runs:
            r = res[k]
            ok = r.success & (r.pred_clean == y)
            correct = (r.pred_clean == y).sum().clamp_min(1)
            d = float(r.distortion[ok].mean()) if bool(ok.any()) else float("nan")
            rows.append([f"{k}, network {label}", f"{t[k] / len(x) * 1e3:.1f}", f"{t[k] / t['C&W']:.2f}",
                         f"{float(ok.sum() / correct):.2f}", f"{d:.3f}"])
    rep.table(["attack", "ms / image", "time / C&W (same precision)", "P_suc", "D̄"], rows)


# ---------------------------------------------------------------------------- 5. the main job
def main_job(rep: Report, cfg: Config, timeout: float, out_dir: Path) -> None:
    data = os.environ.get("SMOOTHLAB_DATA")
    has_photos = bool(data) and (Path(data) / "imagenet-samples").is_dir()
    args = ["bench", "--device", cfg.device, "--out", str(out_dir), "--overwrite", "--no-progress"]
    if cfg.bench_quick:
        args += ["--quick", "--n-images", str(cfg.bench_images), "--workers", "0"]
    else:
        args += ["--n-images", str(cfg.bench_images)]
    if has_photos:
        args += ["--dataset", "imagenet"]
        what = f"{cfg.bench_images} ImageNet photos (the sample), EfficientNet-Lite0, Table 1 (target <= 5 minutes on one H100)"
    else:
        what = f"{cfg.bench_images} embedded MNIST digits (no ImageNet sample under $SMOOTHLAB_DATA), C4, Table 1"
    cmd = [sys.executable, "-m", "smoothlab", *args]
    rep(f"{what}: `smoothlab {' '.join(args)}`, time limit {timeout:.0f} s")
    rep()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        done = len(list((out_dir / "shards").glob("*.parquet")))
        rep(f"**stopped at the time limit** ({timeout:.0f} s) with {done} shard(s) written to `{out_dir}` "
            "(rerun the same command to resume; the spec's shard size says how many images that is)")
        rep()
        return
    wall = time.perf_counter() - t0
    rep(f"exit code {proc.returncode}, **{wall:.1f} s** wall (including start-up)")
    rep()
    table = out_dir / "table.md"
    if table.is_file():
        for line in table.read_text().splitlines():
            rep(line)
    else:
        rep("```")
        for line in (proc.stdout + proc.stderr).strip().splitlines()[-15:]:
            rep(line)
        rep("```")
    rep()


# ---------------------------------------------------------------------------- driver
def run(cfg: Config, out: Path | None) -> str:
    t_start = time.perf_counter()
    rep = Report()
    rep("# GPU check (issue 10)")
    rep()
    machine(rep, cfg)
    work = Path(os.environ.get("OUT", "") or (out.parent if out else ROOT / "gpu-check-out"))

    def left() -> float:
        return cfg.time_limit - (time.perf_counter() - t_start)

    with rep.section("1. Device-parametrised tests"):
        run_tests(rep, cfg, timeout=max(10.0, min(150.0, 0.3 * left())))
    with rep.section("2. CG iteration: time and achieved bandwidth"):
        cg_bandwidth(rep, cfg)
    with rep.section("3. Smoothing solvers: set-up and forward + backward"):
        solver_applies(rep, cfg)
    with rep.section("4. sC&W / C&W at 224x224 on EfficientNet-Lite0"):
        attacks_224(rep, cfg)
    with rep.section("5. The main job: smoothlab bench"):
        main_job(rep, cfg, timeout=max(cfg.min_bench_seconds, left() - 10.0), out_dir=work / "bench")
    rep(f"Total: {time.perf_counter() - t_start:.0f} s.")
    text = rep.text()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default) or cpu; the dry run defaults to cpu")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report (default: $OUT/gpu_check.md when $OUT is set)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: check the logic in seconds")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the whole script (default 450)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile fused CG iteration")
    args = parser.parse_args(argv)
    cfg = Config.dry(args.device or "cpu") if args.dry_run else Config(device=args.device or "cuda")
    if args.time_limit is not None:
        cfg.time_limit = args.time_limit
    if args.no_compile:
        cfg.compile = False
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here: run on a GPU machine, or --dry-run --device cpu", file=sys.stderr)
        return 2
    out = args.out
    if out is None and os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "gpu_check.md"
    run(cfg, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
