"""Fidelity to the paper, and beyond it (issue 9): the measurements behind benchmarks/README.md.

Each sub-command prints a Markdown table and the machine load (``os.getloadavg``) before and
after; all are deterministic except the timings. Keep them small on a shared machine.

    python benchmarks/bench_fidelity.py table1 [--n 200]      # Table 1 with every grid, + DDN/FMN
    python benchmarks/bench_fidelity.py grids [--n 200] [--both]  # the Table 2 grids (and Table 1's)
    python benchmarks/bench_fidelity.py options [--n 200]     # loss and grad_at of FGSM/I-FGSM/PGD2/sPGD2
    python benchmarks/bench_fidelity.py loops [--n 200]       # sPGD2: eq. 12 vs the authors' loop, piece by piece
    python benchmarks/bench_fidelity.py png [--n 100]         # P_suc after a real PNG round trip
    python benchmarks/bench_fidelity.py truncation [--n 20] [--unrolled] [--attacks spgd2,scw] [--no-abort]
                                                              # truncated CG vs exact, natural images
    python benchmarks/bench_fidelity.py adjoint [--n 4]       # adjoint vs derivative of truncated CG
    python benchmarks/bench_fidelity.py c4 [--epochs 30] [--only 1,3]  # C4 training recipes vs FGSM

``--threads`` sets torch's CPU threads (default 1). Natural images need the ImageNet sample
(``SMOOTHLAB_DATA``, see :func:`smoothlab.data.imagenet_samples`).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import torch


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def run_spec(spec: Any) -> Any:
    import smoothlab.bench as bench

    t0 = time.perf_counter()
    res = bench.run(spec, workers=0, progress=False)
    return res, time.perf_counter() - t0


def fmt_table(summary: pd.DataFrame, spec: Any, paper: dict[str, str] | None = None) -> str:
    from smoothlab.metrics import ATTACK_LABELS

    grids = {a.key: a for a in spec.attacks}
    lines = ["| attack | grid | P_suc | D̄ | V̄ | SSIM | paper P_suc / D̄ |", "|---|---|---:|---:|---:|---:|---|"]
    for key, row in summary.iterrows():
        a = grids[key]
        grid = "{" + ", ".join(f"{b:g}" for b in a.budgets) + "}" if a.budgets else "runs once"
        lines.append(
            f"| {ATTACK_LABELS.get(key, key)} | {grid} | {row.p_success:.2f} | {row.mean_distortion:.2f} | "
            f"{row.mean_visibility:.2f} | {row.mean_ssim:.3f} | {(paper or {}).get(key, '—')} |"
        )
    return "\n".join(lines)


PAPER = {
    "fgsm": "0.89 / 5.02",
    "ifgsm": "1.00 / 2.69",
    "pgd2": "1.00 / 1.71",
    "cw": "1.00 / 2.49",
    "spgd2": "0.97 / 3.36",
    "scw": "1.00 / 1.97",
}


def cmd_table1(args: argparse.Namespace) -> None:
    from smoothlab.bench import BenchSpec

    names = ["fgsm", "ifgsm", "pgd2", "cw", "ddn", "fmn", "spgd2", "spgd2-authors", "scw", "sddn", "sfmn"]
    spec = BenchSpec.paper(1, attack_names=names, n_images=args.n, batch_size=50, shard_size=50)
    print(load())
    res, sec = run_spec(spec)
    s = res.summary
    print(f"{args.n} digits, N = {int(s.n_correct.iloc[0])} correctly classified, {sec:.0f} s, {load()}")
    print(fmt_table(s, spec, PAPER))


def cmd_grids(args: argparse.Namespace) -> None:
    from smoothlab.bench import TABLE2_BUDGETS, BenchSpec

    names = ["fgsm", "ifgsm", "pgd2", "spgd2", "spgd2-authors"]
    spec1 = BenchSpec.paper(1, attack_names=names, n_images=args.n, batch_size=50, shard_size=50, visibility=False)
    spec2 = spec1.with_budgets({**TABLE2_BUDGETS, "spgd2-authors": TABLE2_BUDGETS["spgd2"]})
    print(load())
    runs = (("Table 1 grids", spec1), ("Table 2 grids", spec2)) if args.both else (("Table 2 grids", spec2),)
    for label, spec in runs:
        res, sec = run_spec(spec)
        print(f"\n{label}: {args.n} digits, {sec:.0f} s, {load()}")
        print(fmt_table(res.summary, spec, PAPER))


def cmd_options(args: argparse.Namespace) -> None:
    from smoothlab.bench import AttackSpec, BenchSpec, default_attacks

    base = {a.key: a for a in default_attacks(["fgsm", "ifgsm", "pgd2", "spgd2"])}
    attacks = []
    for key, a in base.items():
        for loss in ("cross-entropy", "margin"):
            grads = ("clipped", "unclipped") if a.name == "pgd2" or a.name == "spgd2" else ("clipped",)
            for grad_at in grads:
                params = dict(a.params)
                if loss != "cross-entropy":
                    params["loss"] = loss
                if grad_at != "clipped":
                    params["grad_at"] = grad_at
                label = f"{key}/{loss}/{grad_at}"
                attacks.append(AttackSpec(a.name, params, a.budgets, label))
        if key in ("pgd2", "spgd2"):  # the sphere of the authors' code, with each grad_at
            for grad_at in ("clipped", "unclipped"):
                params = {**a.params, "projection": "sphere", **({"grad_at": grad_at} if grad_at != "clipped" else {})}
                attacks.append(AttackSpec(a.name, params, a.budgets, f"{key}/cross-entropy/{grad_at}/sphere"))
    spec = BenchSpec(attacks=tuple(attacks), n_images=args.n, batch_size=50, shard_size=50, visibility=False)
    print(load())
    res, sec = run_spec(spec)
    print(f"{args.n} digits, Table 1 grids, {sec:.0f} s, {load()}")
    print("| attack | loss | gradient at | P_suc | D̄ | SSIM |\n|---|---|---|---:|---:|---:|")
    for key, row in res.summary.iterrows():
        parts = key.split("/")
        grad = parts[2] + (" (sphere)" if len(parts) > 3 else "")
        print(f"| {parts[0]} | {parts[1]} | {grad} | {row.p_success:.2f} | {row.mean_distortion:.2f} | {row.mean_ssim:.3f} |")


def cmd_loops(args: argparse.Namespace) -> None:
    """sPGD2 loops: eq. (12) and the perturbation smoothing, with each place of the gradient and projection."""
    from smoothlab.bench import AttackSpec, BenchSpec, default_attacks

    (a,) = default_attacks(["spgd2"])
    attacks = []
    for smooth in ("gradient", "perturbation"):
        for grad_at in ("clipped", "unclipped"):
            for projection in ("ball", "sphere"):
                params = {**a.params, "smooth": smooth, "grad_at": grad_at, "projection": projection}
                attacks.append(AttackSpec("spgd2", params, a.budgets, f"{smooth}/{grad_at}/{projection}"))
    spec = BenchSpec(attacks=tuple(attacks), n_images=args.n, batch_size=50, shard_size=50, visibility=False)
    print(load())
    res, sec = run_spec(spec)
    print(f"{args.n} digits, sPGD2 Table 1 grid, {sec:.0f} s, {load()}")
    print("| smoothed | gradient at | projection | P_suc | D̄ | SSIM |\n|---|---|---|---:|---:|---:|")
    for key, row in res.summary.iterrows():
        sm, ga, pr = key.split("/")
        print(f"| {sm} | {ga} | {pr} | {row.p_success:.2f} | {row.mean_distortion:.2f} | {row.mean_ssim:.3f} |")


def png_round_trip(x: torch.Tensor) -> torch.Tensor:
    """Save each image as an 8-bit PNG (rounding, as PIL and torchvision's save_image do) and load it."""
    from PIL import Image

    out = []
    for img in x.detach().cpu():
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
        buf.seek(0)
        back = np.asarray(Image.open(buf), dtype=np.float32) / 255
        out.append(torch.from_numpy(back.reshape(arr.shape)).permute(2, 0, 1))
    return torch.stack(out)


def cmd_png(args: argparse.Namespace) -> None:
    from smoothlab.attacks import ATTACKS
    from smoothlab.bench import BenchSpec
    from smoothlab.bench.shard import _attack_kwargs
    from smoothlab.data import mnist
    from smoothlab.metrics import summary
    from smoothlab.models import c4
    from smoothlab.records import records_from_result

    names = ["fgsm", "ifgsm", "pgd2", "cw", "ddn", "fmn", "spgd2", "scw", "sddn", "sfmn"]
    spec = BenchSpec.paper(1, attack_names=names)
    x, y = mnist("test")
    x, y = x[: args.n], y[: args.n]
    model = c4(pretrained=True)
    print(load())
    rows = []
    for a in spec.attacks:
        fn = ATTACKS[a.name]
        kwargs = _attack_kwargs(a)
        k = max(1, len(a.budgets))
        xin, yin = x.repeat(k, 1, 1, 1), y.repeat(k)
        extra = {"eps": torch.tensor(a.budgets).repeat_interleave(x.shape[0])} if a.budgets else {}
        out = {}
        for quant in (False, True):
            t0 = time.perf_counter()
            res = fn(model, xin, yin, quantise=quant, **extra, **kwargs)
            sec = time.perf_counter() - t0
            ids = np.tile(np.arange(x.shape[0]), k)
            budget = np.repeat(np.asarray(a.budgets, dtype=float), x.shape[0]) if a.budgets else None
            rec = records_from_result(res, image_ids=ids, labels=yin, budget=budget)
            s_float = summary(rec).iloc[0]
            with torch.no_grad():
                loaded = png_round_trip(res.x_adv)
                pred = model(loaded).argmax(1)
            png = res.success & (pred != yin)
            rec_png = rec.copy()
            rec_png["success"] = png.numpy()
            rec_png["pred_adv"] = torch.where(png, pred, res.pred_clean).numpy()
            d = (loaded - xin).flatten(1).norm(dim=1).numpy()
            rec_png["distortion"] = np.where(png.numpy(), d, np.nan)
            rec_png["ssim"] = np.nan
            s_png = summary(rec_png).iloc[0]
            out[quant] = (s_float, s_png, sec)
        (f0, p0, t0_), (f1, p1, t1_) = out[False], out[True]
        rows.append(
            f"| {a.key} | {f0.p_success:.2f} / {f0.mean_distortion:.2f} | {p0.p_success:.2f} / {p0.mean_distortion:.2f} "
            f"| {f1.p_success:.2f} / {f1.mean_distortion:.2f} | {p1.p_success:.2f} / {p1.mean_distortion:.2f} "
            f"| {t1_ / max(t0_, 1e-9):.2f} |"
        )
        print(rows[-1], flush=True)
    print(f"\n{args.n} digits, Table 1 grids, {load()}")
    print("| attack | float P_suc / D̄ | after PNG | quantise=True | quantise=True after PNG | time ratio |")
    print("|---|---|---|---|---|---:|")
    print("\n".join(rows))


def cmd_truncation(args: argparse.Namespace) -> None:
    from smoothlab.attacks import paper_settings, scw, spgd2
    from smoothlab.bench import IMAGENET_BUDGETS
    from smoothlab.data import imagenet
    from smoothlab.metrics import summary
    from smoothlab.models import imagenet as imagenet_model
    from smoothlab.records import records_from_result
    from smoothlab.smoothing import SmoothingSpec

    model = imagenet_model()
    data = imagenet()
    ids = list(range(0, 1000, 1000 // args.n))[: args.n]
    x, y = data.batch(ids)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 5]).argmax(1) for i in range(0, len(ids), 5)])
    keep = pred == y
    x, y = x[keep], y[keep]
    print(f"{len(ids)} photos, {int(keep.sum())} correctly classified; {load()}")
    modes = {
        "paper (50 CG iterations, adjoint backward)": SmoothingSpec.imagenet(),
        "exact (direct solve)": SmoothingSpec.imagenet(exact=True),
    }
    if args.unrolled:
        modes["paper, backward through the iterations"] = SmoothingSpec.imagenet(backward="unrolled")
    lines = ["| attack | smoothing | P_suc | D̄ | SSIM | s / photo |", "|---|---|---:|---:|---:|---:|"]
    eps = IMAGENET_BUDGETS["spgd2"]
    for attack in args.attacks.split(","):
        for label, sm in modes.items():
            if attack == "spgd2" and "through" in label:
                continue  # eq. (12) never differentiates through the smoother
            recs, t0 = [], time.perf_counter()
            for i in range(0, x.shape[0], args.batch):
                xb, yb = x[i : i + args.batch], y[i : i + args.batch]
                kw = paper_settings(attack, "imagenet", eps=False)
                kw["smoother"] = sm
                if attack == "scw" and args.no_abort:
                    kw["abort_early"] = False
                if attack == "spgd2":
                    k = len(eps)
                    xin, yin = xb.repeat(k, 1, 1, 1), yb.repeat(k)
                    e = torch.tensor(eps).repeat_interleave(xb.shape[0])
                    res = spgd2(model, xin, yin, eps=e, **kw)
                    budget = np.repeat(np.asarray(eps), xb.shape[0])
                else:
                    xin, yin, budget = xb, yb, None
                    res = scw(model, xin, yin, **kw)
                idx = np.tile(np.arange(i, i + xb.shape[0]), len(eps) if attack == "spgd2" else 1)
                recs.append(records_from_result(res, image_ids=idx, labels=yin, budget=budget, x=xin, visibility=False))
            sec = time.perf_counter() - t0
            s = summary(pd.concat(recs, ignore_index=True)).iloc[0]
            lines.append(f"| {attack} | {label} | {s.p_success:.2f} | {s.mean_distortion:.3f} | {s.mean_ssim:.4f} | {sec / x.shape[0]:.1f} |")
            print(lines[-1], f"({load()})", flush=True)
    print("\n".join(lines))


def cmd_adjoint(args: argparse.Namespace) -> None:
    """How far the adjoint backward of truncated CG is from the derivative of what was computed."""
    from smoothlab.data import imagenet
    from smoothlab.smoothing import SmoothingSpec

    data = imagenet()
    x, _ = data.batch(list(range(0, 1000, 1000 // args.n))[: args.n])
    g = torch.Generator().manual_seed(0)
    v = torch.randn(x.shape, generator=g)  # an upstream gradient
    z = torch.randn(x.shape, generator=g)
    print(load())

    def vjp(spec: Any) -> tuple[torch.Tensor, torch.Tensor]:
        S = spec(x)
        zz = z.clone().requires_grad_(True)
        out = S(zz)
        (grad,) = torch.autograd.grad(out, zz, v)
        return out.detach(), grad

    def rel(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        return ((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).numpy()

    def cos(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).numpy()

    out_exact, g_exact = vjp(SmoothingSpec.imagenet(exact=True))
    lines = ["| CG iterations | forward vs exact | adjoint vs true derivative | adjoint vs exact gradient | true derivative vs exact gradient | cos(adjoint, true) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for it in (50, 100, 200):
        out_t, g_adj = vjp(SmoothingSpec.imagenet(max_iter=it))
        _, g_unr = vjp(SmoothingSpec.imagenet(max_iter=it, backward="unrolled"))
        lines.append(
            f"| {it} | {rel(out_t, out_exact).mean():.4f} | {rel(g_adj, g_unr).mean():.4f} | {rel(g_adj, g_exact).mean():.4f} "
            f"| {rel(g_unr, g_exact).mean():.4f} | {cos(g_adj, g_unr).mean():.5f} |"
        )
        print(lines[-1], flush=True)
    print(f"\n{args.n} photos 224x224, random z and upstream gradient, relative L2 errors (mean), {load()}")
    print("\n".join(lines))


def cmd_c4(args: argparse.Namespace) -> None:
    from smoothlab.data import mnist
    from smoothlab.models import accuracy, c4, train_c4

    torch.use_deterministic_algorithms(True)
    xtr, ytr = mnist("train")
    xte, yte = mnist("test")

    def fgsm_acc(model: torch.nn.Module) -> float:
        xr = xte.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xr), yte)
        (g,) = torch.autograd.grad(loss, xr)
        with torch.no_grad():
            return float((model((xte + 0.3 * g.sign()).clamp(0, 1)).argmax(1) == yte).float().mean())

    def shifted(x: torch.Tensor, y: torch.Tensor, shifts: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = [torch.roll(x, (dy, dx), (2, 3)) for dy, dx in shifts]  # digits sit in a blank border
        return torch.cat(xs), y.repeat(len(shifts))

    shifts = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (2, 0), (-2, 0), (0, 2), (0, -2)][: args.shifts]
    recipes = {
        "shipped (6 epochs)": None,
        f"{args.epochs} epochs": (xtr, ytr, args.epochs),
        f"shifts x{len(shifts)}, {max(1, args.epochs // len(shifts))} epochs (same steps)": (
            *shifted(xtr, ytr, shifts), max(1, args.epochs // len(shifts))),
    }
    if args.only:  # run some recipes only (their 1-based numbers, shipped = 1), e.g. "3"
        keep = {int(k) for k in args.only.split(",")}
        recipes = {k: v for i, (k, v) in enumerate(recipes.items(), 1) if i in keep}
    print(load())
    lines = ["| recipe | clean accuracy | accuracy under FGSM ε=0.3 | training s |", "|---|---:|---:|---:|"]
    for label, recipe in recipes.items():
        t0 = time.perf_counter()
        if recipe is None:
            model = c4(pretrained=True)
        else:
            xs, ys, ep = recipe
            model = train_c4(xs, ys, epochs=ep, seed=0)
        sec = time.perf_counter() - t0
        lines.append(f"| {label} | {accuracy(model, xte, yte):.3f} | {fgsm_acc(model):.3f} | {sec:.0f} |")
        print(lines[-1], f"({load()})", flush=True)
        if recipe is not None and args.save:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{args.save}-{len(lines)}.pt")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("table1", "grids", "options", "loops", "png", "truncation", "adjoint", "c4"))
    ap.add_argument("--n", type=int, help="images (default: 200 digits, 100 for png, 20 photos, 4 for adjoint)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=5, help="photos per attack call (truncation)")
    ap.add_argument("--unrolled", action="store_true", help="truncation: also sC&W differentiating through CG")
    ap.add_argument("--attacks", default="spgd2,scw", help="truncation: which attacks (spgd2,scw)")
    ap.add_argument("--no-abort", action="store_true", help="truncation: sC&W without early abort")
    ap.add_argument("--epochs", type=int, default=30, help="c4: epochs of the longer recipe")
    ap.add_argument("--shifts", type=int, default=9, help="c4: shifted copies of each digit (<= 9)")
    ap.add_argument("--save", help="c4: save the trained weights as SAVE-<k>.pt")
    ap.add_argument("--both", action="store_true", help="grids: run the Table 1 grids too")
    ap.add_argument("--only", help="c4: comma-separated recipe numbers to run (1 = shipped)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    defaults = {"png": 100, "truncation": 20, "adjoint": 4}
    if args.n is None:
        args.n = defaults.get(args.command, 200)
    globals()[f"cmd_{args.command}"](args)


if __name__ == "__main__":
    main()
