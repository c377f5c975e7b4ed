"""C4: the paper's MNIST network (sec. 5.2), its training, and its shipped weights.

Architecture (the cleverhans "basic CNN" the authors used, DESIGN.md §4)::

    input  (B, 1, 28, 28) in [0, 1]
    conv   64 @ 8x8, stride 2, SAME padding (TensorFlow's: pad 3 / 3) -> (B, 64, 14, 14), ReLU
    conv  128 @ 6x6, stride 2, VALID                                  -> (B, 128, 5, 5),  ReLU
    conv  128 @ 5x5, stride 1, VALID                                  -> (B, 128, 1, 1),  ReLU
    flatten, linear 128 -> 10                                         -> logits (B, 10)

Training (:func:`train_c4`) follows the authors' recipe: Adam, lr 1e-3, batch 128,
6 epochs, label smoothing 0.1; adversarial training averages the loss on the clean
batch and on FGSM(eps=0.3) examples crafted on the current model (sec. 5.3, "Adversarial
training"; Goodfellow et al. [6]). Beyond the paper, ``adversarial="pgd2"`` trains on L2 PGD
examples only (Madry et al.'s min-max training, in the L2 norm).

Shipped weights (``weights/c4.pt``, ``weights/c4_adv_fgsm.pt``) were made by
``scripts/train_c4.py`` on the embedded 4,000-image train split; ``weights/manifest.json``
records their SHA-256, the training settings and the accuracy on the embedded 1,000-image
test split. Every load checks the SHA-256. Both were trained with the authors' 6 epochs,
seed 0: test accuracy 0.974 (clean training) and 0.970 (FGSM training; 0.74 under FGSM at
eps 0.3, against 0.003 for the clean model). The paper reports 0.99 for both, trained on
the full 60,000-image MNIST. ``weights/c4_adv_pgd2.pt`` (``c4(pretrained=True, adversarial="pgd2")``,
the benchmark model ``"c4-l2adv"``) is C4 trained by L2 PGD (Madry et al.); its recipe and
accuracies are in the manifest and in ``scripts/train_c4.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smoothlab._validation import (
    check_choice,
    check_images,
    check_int,
    check_labels,
    check_positive,
    check_range,
)

__all__ = [
    "C4",
    "WEIGHTS_DIR",
    "WEIGHT_FILES",
    "accuracy",
    "c4",
    "load_c4_weights",
    "predict",
    "same_padding",
    "train_c4",
]

#: Directory of the shipped weights and their manifest.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: File name per ``adversarial`` value of :func:`c4` (``True`` is ``"fgsm"``, the paper's Table 2 model).
WEIGHT_FILES = {False: "c4.pt", True: "c4_adv_fgsm.pt", "fgsm": "c4_adv_fgsm.pt", "pgd2": "c4_adv_pgd2.pt"}
_NUM_CLASSES = 10


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding ``(before, after)`` along one axis.

    The output has ``ceil(size / stride)`` samples; the total padding is
    ``max((ceil(size / stride) - 1) * stride + kernel - size, 0)``, of which
    ``total // 2`` goes before and the rest after (TensorFlow puts the odd pixel after).

    >>> same_padding(28, 8, 2)
    (3, 3)
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class C4(nn.Module):
    """The C4 network of the paper (sec. 5.2): three convolutions and one linear layer.

    Takes ``(B, 1, 28, 28)`` images in ``[0, 1]`` (no normalisation) and returns logits
    ``(B, 10)``. The first convolution uses TensorFlow SAME padding, computed from the
    input size, the other two VALID (none).
    """

    #: On the CPU, run the layout of :meth:`_forward_cpu` (faster; equal up to float32 rounding).
    #: ``False`` gives the default layout (the numerics of the code before issue 10, `tests/test_bench_speed.py`).
    fast_cpu: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=8, stride=2)
        self.conv2 = nn.Conv2d(64, 128, kernel_size=6, stride=2)
        self.conv3 = nn.Conv2d(128, 128, kernel_size=5, stride=1)
        self.fc = nn.Linear(128, _NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # shape check only: a range check would sync with the device at every call
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"C4 input x must have shape (B, 1, 28, 28), got {got}")
        top, bottom = same_padding(x.shape[2], 8, 2)
        left, right = same_padding(x.shape[3], 8, 2)
        x = F.pad(x, (left, right, top, bottom))
        if x.device.type == "cpu" and self.fast_cpu and not self._observed():
            return self._forward_cpu(x)
        h = F.relu(self.conv1(x))  # (B, 64, 14, 14)
        h = F.relu(self.conv2(h))  # (B, 128, 5, 5)
        h = F.relu(self.conv3(h))  # (B, 128, 1, 1)
        return self.fc(h.flatten(1))

    def _observed(self) -> bool:
        """Hooks on the convolutions (or on every module), or autocast: cases that must see the plain layers."""
        convs = (self.conv1, self.conv2, self.conv3)
        hooked = any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in convs)
        glob = nn.modules.module
        hooked = hooked or bool(glob._global_forward_hooks or glob._global_forward_pre_hooks or glob._global_backward_hooks
                               or glob._global_backward_pre_hooks)
        return hooked or torch.is_autocast_enabled("cpu")

    def _forward_cpu(self, x: torch.Tensor) -> torch.Tensor:
        """The same network, laid out for oneDNN on the CPU (``benchmarks/README.md``, "Speed").

        Activations in channels-last order, and the first convolution's input gradient
        by ``fold`` (its single input channel makes oneDNN's own backward slow): forward + backward
        passes 1.4-1.6x faster than the default layout (batches of 50-600, one thread), equal to it up to
        float32 rounding, second-order gradients included. Not taken under autocast, or when a convolution
        (or every module) has hooks, which must see the layers as they are."""
        xd = x.detach()
        if xd.is_contiguous():
            # one input channel: the same memory, seen with channels-last strides, so that oneDNN writes
            # conv1's output in channels-last order itself (else NCHW, and a transposing copy follows)
            xd = xd.as_strided(xd.shape, (xd.stride(0), 1, xd.stride(2), 1))
        # the weights' gradients go through conv1's own node (skipped when only x's is asked for)
        h = _InputGradByFold.apply(self.conv1(xd), x, self.conv1.weight, 2)
        # in channels-last order from here on (conv2 and conv3 follow their input's layout), so
        # that each ReLU and its gradient share one layout (a no-op after the strides above)
        h = F.relu(h.contiguous(memory_format=torch.channels_last))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        return self.fc(h.flatten(1))


class _InputGradByFold(torch.autograd.Function):
    """Identity on ``out = conv2d(x, w, stride=s)`` that adds the gradient w.r.t. ``x``: ``fold(wᵀ g)``
    (col2im), passing ``g`` on to ``out`` unchanged. ``w``'s first-order gradient comes from ``out``'s node
    (here it is None); ``w`` is saved undetached so that a double backward differentiates ``fold(wᵀ g)``."""

    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.size, ctx.stride = (x.shape[2], x.shape[3]), stride
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (w,) = ctx.saved_tensors
        gx = None
        if ctx.needs_input_grad[1]:
            co, _, kh, kw = w.shape
            cols = torch.matmul(w.reshape(co, -1).t(), grad.reshape(grad.shape[0], co, -1))
            gx = F.fold(cols, ctx.size, (kh, kw), stride=ctx.stride)
        return grad, gx, None, None


def _seeded_c4(seed: int | None) -> C4:
    """A freshly initialised C4 on the CPU; with ``seed``, the same weights every time
    (the global RNG is left as it was)."""
    if seed is None:
        return C4()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return C4()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_c4_weights(
    path: str | os.PathLike[str],
    manifest: str | os.PathLike[str] | dict[str, Any] | None = None,
    *,
    device: torch.device | str | None = None,
) -> C4:
    """Load C4 weights from ``path`` after checking their SHA-256 against a manifest.

    Parameters
    ----------
    path
        A ``state_dict`` file saved by ``scripts/train_c4.py``.
    manifest
        The manifest (a path to the JSON file or its parsed content); by default
        ``manifest.json`` beside ``path``. Its entry ``weights[<file name>]["sha256"]``
        is the expected checksum.
    device
        Where to put the model (default: CPU).

    Returns
    -------
    C4
        The model in eval mode.

    Raises
    ------
    FileNotFoundError
        The weights or the manifest are missing.
    ValueError
        The manifest has no entry for the file, or the checksum does not match (the file
        is corrupt or was changed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"C4 weights not found: {path}. Reinstall smoothlab, or regenerate them with scripts/train_c4.py"
        )
    if manifest is None:
        manifest = path.parent / "manifest.json"
    if not isinstance(manifest, dict):
        manifest_path = Path(manifest)
        if not manifest_path.is_file():
            raise FileNotFoundError(f"weights manifest not found: {manifest_path}")
        manifest = json.loads(manifest_path.read_text())
    entry = manifest.get("weights", {}).get(path.name)
    if entry is None or "sha256" not in entry:
        raise ValueError(f"the weights manifest has no sha256 entry for {path.name!r}")
    digest = _sha256(path)
    if digest != entry["sha256"]:
        raise ValueError(
            f"checksum mismatch for {path}: sha256 {digest}, the manifest expects {entry['sha256']}. "
            "The file is corrupt or was changed; reinstall smoothlab or regenerate it with scripts/train_c4.py"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = C4()
    model.load_state_dict(state)
    return model.to(device or "cpu").eval()


def c4(
    pretrained: bool = False,
    adversarial: bool | str = False,
    device: torch.device | str | None = None,
    *,
    seed: int | None = None,
) -> C4:
    """The C4 MNIST network (sec. 5.2), optionally with the shipped weights.

    Parameters
    ----------
    pretrained
        Load the shipped weights, trained on the embedded MNIST train split (4,000 digits)
        by ``scripts/train_c4.py``; accuracy on the embedded test split is recorded in
        ``weights/manifest.json`` (at least 0.97).
    adversarial : bool or {"fgsm", "pgd2"}
        With ``pretrained``: ``True`` or ``"fgsm"``, the FGSM-adversarially trained weights (eps 0.3,
        loss averaged over clean and FGSM batches) used for Table 2; ``"pgd2"``, the weights
        trained on L2 PGD examples (Madry et al.; eps 2, ``scripts/train_c4.py``), beyond the paper.
    device
        Where to put the model (default: CPU).
    seed
        Seed of the random initialisation when ``pretrained`` is false (default: the global RNG).

    Returns
    -------
    C4
        The model in eval mode; input ``(B, 1, 28, 28)`` in ``[0, 1]``, output logits ``(B, 10)``.
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    if not isinstance(adversarial, (bool, str)):
        raise TypeError(f"adversarial must be a bool, 'fgsm' or 'pgd2', got {adversarial!r}")
    check_choice(adversarial, "adversarial", (False, True, "fgsm", "pgd2"))
    if pretrained:
        if seed is not None:
            raise ValueError("seed only applies to a random initialisation; pass pretrained=False to use it")
        return load_c4_weights(WEIGHTS_DIR / WEIGHT_FILES[adversarial], device=device)
    if adversarial:
        raise ValueError(
            "adversarial=True selects the shipped adversarially trained weights; it needs pretrained=True "
            "(to train one yourself use train_c4(x, y, adversarial='fgsm') or adversarial='pgd2')"
        )
    if seed is not None:
        seed = check_int(seed, "seed")
    return _seeded_c4(seed).to(device or "cpu").eval()


def _smoothed_targets(y: torch.Tensor, smoothing: float) -> torch.Tensor:
    """One-hot targets clipped to ``[smoothing / (K - 1), 1 - smoothing]`` (cleverhans' label smoothing)."""
    onehot = F.one_hot(y, _NUM_CLASSES).to(torch.float32)
    return onehot.clamp(smoothing / (_NUM_CLASSES - 1), 1.0 - smoothing)


def _fgsm(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
    """FGSM (eq. 1 with the sign of the gradient) on the model's own predictions.

    Uses the predicted labels rather than the true ones, as cleverhans does, so that
    adversarial training does not "leak" the labels. Training-time augmentation only;
    the attack of the package is :func:`smoothlab.attacks.fgsm`.
    """
    x_req = x.detach().clone().requires_grad_(True)
    logits = model(x_req)
    loss = F.cross_entropy(logits, logits.argmax(1).detach())
    (grad,) = torch.autograd.grad(loss, x_req)
    return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()


def _pgd2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float) -> torch.Tensor:
    """L2 PGD (eq. 11 with the L2-normalised gradient, as PGD2) with the true labels, from ``x``.

    ``steps`` iterations of ``r ← P_ε(r + step · g / ||g||)``, ``g`` the gradient of the
    cross-entropy at ``clip_[0,1](x + r)``, ``P_ε`` the projection onto the L2 ball of radius
    ``eps``; returns ``clip_[0,1](x + r)``. Training-time augmentation only (Madry et al.'s inner
    maximisation); the attack of the package is :func:`smoothlab.attacks.pgd2`.
    """
    x = x.detach()
    x_adv = x
    for _ in range(steps):
        x_req = x_adv.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_req), y)
        (grad,) = torch.autograd.grad(loss, x_req)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        r = x_adv - x + step * grad / norm
        r_norm = r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        r = r * torch.clamp(eps / r_norm.clamp_min(1e-12), max=1.0)
        x_adv = (x + r).clamp(0.0, 1.0).detach()
    return x_adv


def _check_adversarial(adversarial: str | None, eps: float, steps: int, step: float | None) -> tuple[float, int, float]:
    """Check :func:`train_c4`'s adversarial options; return ``(eps, steps, step)`` (Madry's step rule for ``None``)."""
    check_choice(adversarial, "adversarial", (None, "fgsm", "pgd2"))
    steps = check_int(steps, "steps", 1)
    if adversarial == "pgd2":
        eps = check_positive(eps, "eps")
        step = 2.5 * eps / steps if step is None else check_positive(step, "step")
    else:
        eps = check_range(eps, "eps", 0.0, 1.0, low_open=True)
        step = 0.0 if step is None else check_positive(step, "step")
    return eps, steps, step


def _batch_loss(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, target: torch.Tensor,
    adversarial: str | None, eps: float, steps: int, step: float,
) -> torch.Tensor:
    """One batch's training loss: clean, the FGSM average [6], or on L2 PGD examples only (Madry et al.)."""
    if adversarial == "pgd2":
        return F.cross_entropy(model(_pgd2(model, xb, yb, eps, steps, step)), target)
    loss = F.cross_entropy(model(xb), target)
    if adversarial == "fgsm":
        x_adv = _fgsm(model, xb, eps)
        loss = 0.5 * (loss + F.cross_entropy(model(x_adv), target))
    return loss


def train_c4(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 6,
    batch_size: int = 128,
    lr: float = 1e-3,
    label_smoothing: float = 0.1,
    adversarial: str | None = None,
    eps: float = 0.3,
    steps: int = 5,
    step: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    verbose: bool = False,
) -> C4:
    """Train C4 with the authors' recipe (DESIGN.md §4), deterministically given ``seed``.

    Parameters
    ----------
    x, y
        Training images ``(N, 1, 28, 28)`` in ``[0, 1]`` and labels ``(N,)`` in ``0..9``.
    epochs, batch_size, lr
        Adam with learning rate ``lr``; the data are reshuffled every epoch by a generator
        seeded with ``seed``; the last, smaller batch is kept.
    label_smoothing
        Target ``1 - s`` for the true class and ``s / 9`` for the others (cleverhans' convention).
    adversarial
        ``None``; ``"fgsm"``: each batch's loss is the average of the clean loss and the
        loss on FGSM(``eps``) examples crafted on the current model (adversarial training [6]);
        ``"pgd2"``: each batch's loss is the loss on L2 PGD examples alone, crafted on the current
        model with the true labels, from the clean images, ``steps`` steps of length ``step``,
        projected on the L2 ball of radius ``eps`` (Madry et al.'s adversarial training, L2 norm).
    eps
        L-infinity budget of the FGSM examples, in ``(0, 1]``; L2 budget of the PGD examples (``> 0``).
    steps, step
        ``"pgd2"`` only: iterations and L2 step length of the PGD examples (default
        ``step = 2.5 · eps / steps``, Madry et al.'s rule).
    seed
        Seeds the initialisation and the shuffling (the global RNG is left untouched).
    device
        Where to train (default: the device of ``x``).
    verbose
        Print the mean loss of every epoch.

    Returns
    -------
    C4
        The trained model in eval mode, on ``device``.
    """
    check_images(x, "x")
    check_labels(y, x.shape[0], "y", num_classes=_NUM_CLASSES)
    if tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    lr = check_positive(lr, "lr")
    label_smoothing = check_range(label_smoothing, "label_smoothing", 0.0, 0.5, high_open=True)
    eps, steps, step = _check_adversarial(adversarial, eps, steps, step)
    seed = check_int(seed, "seed")

    device = torch.device(device) if device is not None else x.device
    x = x.to(device=device, dtype=torch.float32)
    y = y.to(device=device, dtype=torch.int64)
    model = _seeded_c4(seed).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = x.shape[0]
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            target = _smoothed_targets(yb, label_smoothing)
            loss = _batch_loss(model, xb, yb, target, adversarial, eps, steps, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * idx.numel()
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {float(total) / n:.4f}", flush=True)
    return model.eval()


def _check_batch_size(batch_size: int) -> int:
    return check_int(batch_size, "batch_size", 1)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels ``argmax model(x)``, computed ``batch_size`` images at a time.

    Runs the model in eval mode (its previous mode is restored) on ``x``'s device.

    Returns
    -------
    torch.Tensor
        int64 ``(N,)`` on ``x``'s device.
    """
    check_images(x, "x")
    batch_size = _check_batch_size(batch_size)
    was_training = model.training
    model.eval()
    try:
        preds = [model(x[i : i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(preds).to(torch.int64)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (the accuracy N / N' of sec. 5.1)."""
    check_images(x, "x")
    check_labels(y, x.shape[0], "y")
    pred = predict(model, x, batch_size)
    return float((pred == y.to(pred.device)).to(torch.float64).mean())
