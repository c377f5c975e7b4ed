"""Input-filtering defences (section 5.4, Table 3).

- :class:`BilateralDefence` -- a bilateral filter in front of a network: the paper's first variant of
  InceptionV3 under transferability ("a bilateral filter with standard deviation 0.5 and 0.2 in the
  domain and range kernel respectively ... before feeding the network").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from smoothlab._validation import check_choice, check_positive
from smoothlab.filters import BILATERAL_WINDOWS, bilateral, bilateral_radius

__all__ = ["BilateralDefence"]


class BilateralDefence(nn.Module):
    """``model(bilateral(x))``: a bilateral filter applied to the input before the network (sec. 5.4).

    The filter is :func:`smoothlab.bilateral` (Gaussian domain kernel x Gaussian range kernel
    on the Euclidean colour distance, only in-image neighbours), pure torch and differentiable, so a
    white-box attack on the defended model gets the exact gradient through the filter.
    The filter is part of the model in both modes: ``train()`` / ``eval()`` only switch the wrapped
    network (they propagate to it as to any submodule) and never bypass the filter.

    Parameters
    ----------
    model
        Network taking ``[0, 1]`` images ``(B, C, H, W)``.
    sigma_d
        Domain (spatial) standard deviation in pixels; the paper's 0.5 by default.
    sigma_r
        Range (photometric) standard deviation on the ``[0, 1]`` scale; the paper's 0.2 by default.
    radius
        Window half-width, default ``ceil(3 sigma_d)`` (2 for 0.5, a 5 x 5 window).
    window
        ``"square"`` or ``"disk"``, see :func:`smoothlab.bilateral`.

    Notes
    -----
    ``forward`` checks the input's shape and dtype but not its values, to stay free of host
    synchronisation inside attack loops; call :func:`smoothlab.bilateral` for a checked filter.
    """

    def __init__(
        self,
        model: nn.Module,
        sigma_d: float = 0.5,
        sigma_r: float = 0.2,
        *,
        radius: int | None = None,
        window: str = "square",
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        if hasattr(model, "input_size"):  # the image side of an ImageNet network (smoothlab.models.imagenet)
            self.input_size = model.input_size
        self.sigma_d = check_positive(sigma_d, "sigma_d")
        self.sigma_r = check_positive(sigma_r, "sigma_r")
        self.radius = bilateral_radius(radius, self.sigma_d)
        self.window = check_choice(window, "window", BILATERAL_WINDOWS)

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        """The bilateral filter alone (what the network sees); shape and dtype checked, values not."""
        return bilateral(x, self.sigma_d, self.sigma_r, radius=self.radius, window=self.window, check_finite=False)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(self.filter(x))

    def extra_repr(self) -> str:
        return (
            f"sigma_d={self.sigma_d:g}, sigma_r={self.sigma_r:g}, radius={self.radius}, "
            f"window={self.window!r}"
        )
