"""How a perturbation sits on its image: is it smooth where the image is smooth, sharp across its edges?

The paper's claim (sec. 4, Fig. 4) is that ``r = ŝ_α(z)`` is "smooth like ``x_o``": flat where
``x_o`` is flat, free to jump across ``x_o``'s edges. These functions put numbers and places on it:

- :func:`edge_contrast` -- how much more ``r`` changes across the image's strongest edges than
  between neighbours in its flat regions (about 1 for noise blind to the image, large for a
  perturbation shaped by it);
- :func:`flat_and_edge_windows` -- where to look: the flattest window of the image and the one
  with the strongest edge, to zoom on the perturbation there;
- :func:`cosine_similarity` -- per image, how well one signal is aligned with another, e.g. the
  smoothed gradient ``ŝ_α(g)`` that sPGD2 follows with the raw gradient ``g`` (sec. 5.3);
- the graph-smoothness energy is :meth:`smoothlab.ImageGraph.smoothness`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smoothlab._validation import check_images, check_int, check_range

__all__ = ["cosine_similarity", "edge_contrast", "flat_and_edge_windows", "neighbour_differences"]


def neighbour_differences(v: torch.Tensor) -> torch.Tensor:
    """Euclidean (over channels) differences between horizontal and vertical 4-neighbours.

    Parameters
    ----------
    v : torch.Tensor, shape (B, C, H, W)

    Returns
    -------
    torch.Tensor, shape (B, H*(W-1) + (H-1)*W)
        ``||v_i - v_j||`` for every horizontal pair, then every vertical pair.
    """
    dh = (v[..., :, 1:] - v[..., :, :-1]).norm(dim=1).flatten(1)
    dv = (v[..., 1:, :] - v[..., :-1, :]).norm(dim=1).flatten(1)
    return torch.cat([dh, dv], dim=1)


def edge_contrast(
    x: torch.Tensor, r: torch.Tensor, *, edge_quantile: float = 0.99, flat_quantile: float = 0.5
) -> torch.Tensor:
    """Mean change of ``r`` across the image's strongest edges over its mean change in flat regions.

    For each image, the 4-neighbour pairs ``(i, j)`` are ranked by the colour distance
    ``||x_i - x_j||``; "edges" are the pairs at or above the ``edge_quantile`` of that distance,
    "flat" the pairs at or below ``flat_quantile``. The result is
    ``mean_edges ||r_i - r_j|| / mean_flat ||r_i - r_j||``.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, H, W)
        The original images (the guide).
    r : torch.Tensor, shape (B, C, H, W)
        Perturbations ``x_a - x_o``.
    edge_quantile, flat_quantile : float
        Quantiles in ``(0, 1)`` of the neighbour colour distance, ``flat < edge``.

    Returns
    -------
    torch.Tensor, shape (B,)
        About 1 for white noise or any pattern blind to ``x``; much larger for a perturbation
        "smooth like ``x``" (sC&W and sPGD2 on photos reach 5-50); ``inf`` where ``r`` is constant
        over the flat pairs but not across edges, NaN where ``r`` is constant everywhere.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 8, 8); x[..., 4:] = 1.0          # a vertical edge
    >>> edge_contrast(x, x * 0.1).item()                         # a perturbation that jumps with it
    inf
    >>> round(edge_contrast(x, torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))).item(), 1) < 3
    True
    """
    x = check_images(x, "x")
    if not isinstance(r, torch.Tensor) or r.shape != x.shape:
        raise ValueError(f"r must be a tensor of the shape of x {tuple(x.shape)}, got {getattr(r, 'shape', type(r).__name__)}")
    check_range(edge_quantile, "edge_quantile", 0.0, 1.0, low_open=True, high_open=True)
    check_range(flat_quantile, "flat_quantile", 0.0, 1.0, low_open=True, high_open=True)
    if not flat_quantile < edge_quantile:
        raise ValueError(f"flat_quantile must be below edge_quantile={edge_quantile}, got {flat_quantile}")
    dx = neighbour_differences(x.double())
    dr = neighbour_differences(r.double())
    edge_at = torch.quantile(dx, edge_quantile, dim=1, keepdim=True)
    flat_at = torch.quantile(dx, flat_quantile, dim=1, keepdim=True)
    edges = dx >= edge_at
    flat = dx <= flat_at
    across = (dr * edges).sum(1) / edges.sum(1)
    within = (dr * flat).sum(1) / flat.sum(1)
    return (across / within).to(x.dtype)


def flat_and_edge_windows(x: torch.Tensor, size: int = 32) -> dict[str, tuple[int, int]]:
    """Top-left corners ``(row, col)`` of the flattest window of ``x`` and of the one holding its strongest edge.

    The flattest window has the least mean neighbour colour distance; the edge window is centred
    on the pair with the largest one (clipped to the image). Both are ``size x size``.

    Parameters
    ----------
    x : torch.Tensor, shape (1, C, H, W) or (C, H, W)
        One image, at least ``size`` pixels on each side.
    size : int
        Window side.

    Returns
    -------
    dict
        ``{"flat": (row, col), "edge": (row, col)}``.
    """
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x.unsqueeze(0)
    x = check_images(x, "x")
    if x.shape[0] != 1:
        raise ValueError(f"x must hold one image, got a batch of {x.shape[0]}")
    size = check_int(size, "size", minimum=2)
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"size must be at most the image's smaller side {min(h, w)}, got {size}")
    v = x[0].double()
    grad = torch.zeros(h, w, dtype=torch.float64)
    grad[:, :-1] += (v[:, :, 1:] - v[:, :, :-1]).norm(dim=0)
    grad[:-1, :] += (v[:, 1:, :] - v[:, :-1, :]).norm(dim=0)
    local = F.avg_pool2d(grad[None, None], size, stride=1)[0, 0]  # mean over each window
    flat = int(local.argmin())
    flat_rc = (flat // local.shape[1], flat % local.shape[1])
    peak = int(grad.argmax())
    pr, pc = peak // w, peak % w
    edge_rc = (min(max(pr - size // 2, 0), h - size), min(max(pc - size // 2, 0), w - size))
    return {"flat": (int(flat_rc[0]), int(flat_rc[1])), "edge": (int(edge_rc[0]), int(edge_rc[1]))}


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of the angle between ``a[i]`` and ``b[i]`` for each image ``i`` of a batch.

    ``<a_i, b_i> / (||a_i|| ||b_i||)`` over all pixels and channels. Section 5.3 of the paper explains
    sPGD2's weakness on MNIST by a step ``ŝ_α(g)`` "weakly correlated with the gradient ``g``": this is
    that correlation, ``cosine_similarity(g, S(g))``.

    Parameters
    ----------
    a, b : torch.Tensor, shape (B, ...)
        Two batches of the same shape.

    Returns
    -------
    torch.Tensor, shape (B,)
        In ``[-1, 1]``; 0 where ``a[i]`` or ``b[i]`` is all zero.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> cosine_similarity(a, torch.tensor([[2.0, 0.0], [1.0, -1.0]]))
    tensor([1., 0.])
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"a and b must be tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape or a.dim() < 1 or a.shape[0] == 0:
        raise ValueError(f"a and b must be non-empty batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a2, b2 = a.flatten(1).double(), b.flatten(1).double()
    num = (a2 * b2).sum(1)
    den = a2.norm(dim=1) * b2.norm(dim=1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den)).to(a.dtype)
