"""An explorer of attack results: pick an image and an attack, see Fig. 4 and Fig. 1 of the paper for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from smoothlab._validation import check_images

__all__ = ["attack_explorer", "attack_panel"]


def attack_panel(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    magnified: tuple[torch.Tensor, torch.Tensor] | None = None,
    title: str | None = None,
    cell_size: int = 180,
) -> Any:
    """One image attacked, in a row: ``x_o``, ``x_a``, the scaled perturbation ``r`` (Fig. 4:
    each channel mapped onto ``[0, 1]``), ``mag(x_o)`` and ``mag(x_a)`` (Fig. 1, eq. 22).

    Parameters
    ----------
    x, x_adv : torch.Tensor, shape (1, C, H, W)
        The original and the adversarial image.
    magnified : pair of tensors, optional
        ``(to_display(magnify(x)), to_display(magnify(x_adv)))`` if already computed.
    title : str, optional
        Figure title.
    cell_size : int
        Side of one image in pixels.
    """
    from smoothlab.magnification import magnify, to_display
    from smoothlab.viz.figures import image_grid, to_rgb

    check_images(x, "x")
    check_images(x_adv, "x_adv")
    if x.shape[0] != 1 or x_adv.shape != x.shape:
        raise ValueError(f"x and x_adv must be single images of one shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    x_adv = x_adv.detach().to(x.device, x.dtype)  # results computed on a GPU, originals on the CPU
    if magnified is None:
        magnified = (to_display(magnify(x)), to_display(magnify(x_adv)))
    r = (x_adv - x).detach()
    r_shown = torch.from_numpy(to_rgb(r, "minmax").transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    as_rgb = [to_rgb(v, "none").transpose(0, 3, 1, 2).astype(np.float32) / 255.0 for v in (x, x_adv, *magnified)]
    batch = np.concatenate([as_rgb[0], as_rgb[1], r_shown.numpy(), as_rgb[2], as_rgb[3]])
    d = float(r.norm())
    captions = ["original x_o", "adversarial x_a", f"perturbation r (scaled), D={d:.2f}", "mag(x_o)", "mag(x_a)"]
    return image_grid({"": batch}, captions={"": captions}, scale="none", max_images=None, cell_size=cell_size, title=title)


def attack_explorer(
    x: torch.Tensor,
    results: Mapping[str, Any],
    *,
    names: Sequence[str] | None = None,
    cell_size: int = 180,
) -> Any:
    """Dropdowns to pick an image and an attack; shows :func:`attack_panel` for that pair.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W)
        The original images.
    results : mapping of str to AttackResult
        Attack name -> its result on ``x`` (``x_adv`` of shape ``(B, C, H, W)``).
    names : sequence of str, optional
        A name per image for the image dropdown (default ``"image 0"``, ...).
    cell_size : int
        Side of one image in pixels.

    Returns
    -------
    ipywidgets.VBox
        With attributes ``image``, ``attack`` (the dropdowns), ``output`` and ``panel(i, name)``
        (the figure shown for image ``i`` and attack ``name``).
    """
    import ipywidgets as widgets

    from smoothlab.magnification import magnify, to_display
    from smoothlab.viz.explorers import _show

    check_images(x, "x")
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping of attack name -> AttackResult")
    for key, res in results.items():
        if tuple(res.x_adv.shape) != tuple(x.shape):
            raise ValueError(f"results[{key!r}].x_adv has shape {tuple(res.x_adv.shape)}, expected {tuple(x.shape)}")
    names = [f"image {i}" for i in range(x.shape[0])] if names is None else list(names)
    if len(names) != x.shape[0]:
        raise ValueError(f"names must hold one name per image ({x.shape[0]}), got {len(names)}")
    mag_x = to_display(magnify(x))
    # each result on the originals' device (an attack may have run on a GPU)
    mag_adv = {k: to_display(magnify(r.x_adv.detach().to(x.device, x.dtype))) for k, r in results.items()}

    def panel(i: int, key: str) -> Any:
        res = results[key]
        ok = "succeeds" if bool(res.success[i]) else "fails"
        title = f"{key} on {names[i]}: {ok}, prediction {int(res.pred_clean[i])} → {int(res.pred_adv[i])}"
        return attack_panel(
            x[i : i + 1], res.x_adv[i : i + 1].detach(), magnified=(mag_x[i : i + 1], mag_adv[key][i : i + 1]),
            title=title, cell_size=cell_size,
        )

    image = widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0, description="image")
    attack = widgets.Dropdown(options=list(results), value=next(iter(results)), description="attack")
    out = widgets.Output()

    def redraw(_: Any = None) -> None:
        _show(out, panel(image.value, attack.value))

    image.observe(redraw, names="value")
    attack.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([image, attack]), out])
    box.image, box.attack, box.output, box.panel = image, attack, out, panel
    return box
