"""The ImageNet single budgets of Table 3 (sec. 5.4): where they come from and the distortions they give.

The paper's sec. 5.2 writes ε = 0.1255 (FGSM, I-FGSM) and ε = 5 (PGD2) for ImageNet; its Table 3 has
D̄ 5.12-5.14 for all four budgeted attacks, on [0, 1] pixels of 299x299x3 photos saved as 8-bit PNGs
(benchmarks/README.md, "The ImageNet single budgets"). Our single budgets reproduce those distortions
on 224x224x3 photos; the literal values stay visible (``settings_provenance``, ``preset="literal"``).
"""

from __future__ import annotations

import math

import pytest
import torch

from smoothlab.attacks import ATTACKS, budget_grids, paper_settings, settings_provenance
from smoothlab.paper import PAPER_TABLES, PAPER_UNIT_SCALE

BILATERAL = "InceptionV3 bilateral filter"
ADV = "InceptionV3 adv. training"
BUDGETED = ("fgsm", "ifgsm", "pgd2", "spgd2")
OUR_VALUES = 3 * 224 * 224  # a Lite0 photo
THEIR_VALUES = 3 * 299 * 299  # an Inception V3 photo of the NIPS 2017 set


def _paper_d(attack: str, column: str = BILATERAL) -> float:
    """The paper's Table 3 D̄ of ``attack`` in our unit ([0, 1] pixels)."""
    return PAPER_TABLES[(3, column)][attack][1] / PAPER_UNIT_SCALE[column]


def _their_measure(norm: float) -> float:
    """D of a perturbation of L2 norm ``norm`` ([0, 1] pixels) as the authors measured it: the image
    saved as an 8-bit PNG by truncation adds an error uniform on [0, 1) level to each of the
    299x299x3 values (mean square 1/3 level², nearly independent of the perturbation)."""
    return math.sqrt(norm**2 + THEIR_VALUES / 3 / 255**2)


def test_the_literal_values_stay_visible() -> None:
    table = settings_provenance("imagenet", ("fgsm", "ifgsm", "pgd2", "spgd2"))
    for attack in ("fgsm", "ifgsm"):
        row = table.loc[(attack, "eps")]
        assert row["paper"] == 0.1255 and row["source"] == "ours" and "16/255" in row["note"]
        assert row["value"] == paper_settings(attack, "imagenet")["eps"] == budget_grids("imagenet", "single")[attack][0]
        assert paper_settings(attack, "imagenet", preset="literal")["eps"] == row["paper"]
        assert "eps" not in paper_settings(attack, "imagenet", eps=False, preset="literal")
    for attack in ("pgd2", "spgd2"):
        assert table.loc[(attack, "eps"), "source"] == "paper"
    # MNIST keeps sec. 5.2's values, word for word
    mnist = settings_provenance("mnist", ("fgsm", "pgd2"))
    assert (mnist.loc[[("fgsm", "eps"), ("pgd2", "eps")], "source"] == "paper").all()


def test_single_budgets_are_table3s_distortion_on_our_photos() -> None:
    """An FGSM step of ε∞ has norm ε∞·sqrt(n) before clipping: the L∞ budget carries the L2 budget's
    norm to our 224x224x3 photos, and that norm, measured as the authors did, is Table 3's D̄."""
    single = budget_grids("imagenet", "single")
    l2 = single["pgd2"][0]
    assert single["spgd2"] == single["pgd2"] and single["ifgsm"] == single["fgsm"]
    assert single["fgsm"][0] * math.sqrt(OUR_VALUES) == pytest.approx(l2, rel=2e-3)
    for attack in BUDGETED:
        assert _their_measure(l2) == pytest.approx(_paper_d(attack), rel=0.01), attack
        # the adversarial-training column: the same perturbations, measured on [-1, 1] pixels
        assert 2 * _their_measure(l2) == pytest.approx(PAPER_TABLES[(3, ADV)][attack][1], rel=0.02), attack
    # the literal ε∞ would give a D several times Table 3's, on their photos and on ours
    literal = paper_settings("fgsm", "imagenet", preset="literal")["eps"]
    assert literal / 2 * math.sqrt(THEIR_VALUES) > 5 * _paper_d("fgsm")


@pytest.mark.slow
def test_single_budgets_give_table3_distortions_on_photos() -> None:
    """FGSM, I-FGSM and PGD2 at the single budgets, on two scikit-image photos with Lite0: D within 15 %
    of the paper's Table 3 D̄ in our unit (the literal ε∞ = 0.1255 lands near 48, nine times it)."""
    pytest.importorskip("skimage.data", reason="the bundled photos come with scikit-image")
    pytest.importorskip("PIL.Image", reason="reading photos needs Pillow (smoothlab[imagenet])")
    from skimage import data as skimage_data

    from smoothlab.data import imagenet_transform
    from smoothlab.models import imagenet as imagenet_model

    torch.manual_seed(0)
    model = imagenet_model()
    x = torch.stack([imagenet_transform(getattr(skimage_data, n)(), 224) for n in ("chelsea", "coffee")])
    y = torch.tensor([282, 967])
    for attack in ("fgsm", "ifgsm", "pgd2"):
        res = ATTACKS[attack](model, x, y, **paper_settings(attack, "imagenet"))
        assert bool(res.success.any()), attack
        d = res.distortion[res.success]
        ratio = d / _paper_d(attack)
        assert bool(((ratio > 0.85) & (ratio < 1.15)).all()), (attack, d.tolist(), _paper_d(attack))
