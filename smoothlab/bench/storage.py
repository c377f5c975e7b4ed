"""The output folder of a benchmark: spec.json, one Parquet file per finished shard, reports.

Layout of ``out/``::

    spec.json                       the BenchSpec (JSON) and its hash
    shards/shard-00000.parquet      records of shard 0, written as soon as it finishes
    ...
    adversarials/shard-00000.parquet  with ``save_adversarials``: each image's least distorted
    ...                             successful adversarial image per attack in shard 0
    records.parquet                 all records, sorted (written when the run is complete)
    table.md, table.csv             summary per attack (eq. 20)
    operating_characteristic.html   Figure 2 (eq. 21), Plotly

Each shard file carries in its Parquet metadata the spec hash, its shard index, its
image indices and a checksum of its records (:func:`records_checksum`); a file that cannot be
read, belongs to another spec or shard, whose content does not match its checksum (altered
after it was written, or written without one), or does not hold exactly the expected records
is reported invalid, deleted and recomputed. Files are
written to a temporary name and renamed, so a crash never leaves half a shard behind.

An adversarials file carries the same tags, the checksum of its shard's records (it belongs to
those records) and one of its own content (:func:`adversarials_checksum`); it is checked the same
way, and a shard whose adversarials file is missing or invalid is recomputed when the run saves
adversarials (the records come out bit-identical). Images are stored as ``uint8`` (``round(255 x)``,
what a PNG holds) where the attack ran with ``quantise=True`` (exact: they are on the 8-bit grid),
else as ``float16``.

A folder written by an older smoothlab for the same spec (a ``spec.json`` of an older
:data:`~smoothlab.bench.spec.SPEC_VERSION` that reads as an equal spec) is taken over: its
``spec.json`` is rewritten and its shards, whose hash is the old one, are recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smoothlab.bench.spec import BenchSpec

__all__ = [
    "SPEC_FILE",
    "SHARD_DIR",
    "REPORT_FILES",
    "prepare_out",
    "read_spec",
    "shard_path",
    "write_shard",
    "read_shard",
    "records_checksum",
    "write_parquet",
    "ADV_DIR",
    "adversarials_path",
    "adversarials_checksum",
    "check_adversarials_folder",
    "write_adversarials",
    "read_adversarials",
]

#: The file of a run's spec in its output folder.
SPEC_FILE = "spec.json"
#: The folder of a run's Parquet shards in its output folder.
SHARD_DIR = "shards"
#: The folder of the adversarial images a run keeps (``--save-adversarials``).
ADV_DIR = "adversarials"
#: The reports a run writes into its output folder.
REPORT_FILES = ("records.parquet", "table.md", "table.csv", "operating_characteristic.html")
_META_PREFIX = "smoothlab."
log = logging.getLogger("smoothlab.bench")


def shard_path(out: Path, index: int) -> Path:
    """The Parquet file of shard ``index`` under the output folder ``out``."""
    return Path(out) / SHARD_DIR / f"shard-{index:05d}.parquet"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # created with mode 0o666 minus the process umask, applied by the OS (as open() does; tempfile
    # would make a 0600 file, and reading the umask means setting it, process-wide)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_parquet(path: Path, df: pd.DataFrame, metadata: dict[str, Any] | None = None) -> None:
    """Write ``df`` to ``path`` atomically, with ``metadata`` (JSON values) in the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    for k, v in (metadata or {}).items():
        meta[(_META_PREFIX + k).encode()] = json.dumps(v).encode()
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_write_bytes(Path(path), sink.getvalue().to_pybytes())


def _read_metadata(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    raw = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in raw.items():
        key = k.decode(errors="replace")
        if key.startswith(_META_PREFIX):
            out[key[len(_META_PREFIX) :]] = json.loads(v.decode())
    return out


def records_checksum(records: pd.DataFrame) -> str:
    """``"sha256:..."`` of a frame's content: its length, then per column the name, the kind and the
    values in a canonical byte form (bool as uint8, integers as int64, floats as float64 with a
    single NaN, anything else as text). A frame and its Parquet round trip get the same checksum.
    """
    h = hashlib.sha256(f"{len(records)}\n".encode())
    for name in records.columns:
        col = records[name]
        if pd.api.types.is_bool_dtype(col):
            kind, data = "b", col.to_numpy(dtype=np.uint8).tobytes()
        elif pd.api.types.is_integer_dtype(col):
            kind, data = "i", col.to_numpy(dtype="<i8").tobytes()
        elif pd.api.types.is_float_dtype(col):
            v = col.to_numpy(dtype="<f8")
            kind, data = "f", np.where(np.isnan(v), np.nan, v).astype("<f8").tobytes()
        else:
            kind, data = "s", "\0".join(map(str, col.tolist())).encode()
        h.update(f"{name}\0{kind}\0{len(data)}\0".encode())
        h.update(data)
    return "sha256:" + h.hexdigest()


def write_shard(out: Path, spec: BenchSpec, index: int, image_ids: np.ndarray, records: pd.DataFrame) -> Path:
    """Write the records of one shard, tagged with the spec hash, shard index, images and the
    checksum of the records."""
    path = shard_path(out, index)
    write_parquet(
        path,
        records,
        {
            "spec_hash": spec.hash,
            "shard_index": int(index),
            "image_ids": [int(i) for i in image_ids],
            "checksum": records_checksum(records),
        },
    )
    return path


def expected_keys(spec: BenchSpec, image_ids: np.ndarray) -> set[tuple[str, float, int]]:
    """The ``(attack, budget, image_id)`` triples a complete shard holds (NaN budget -> -1) with
    ``sweep="full"``; with ``sweep="first-success"``, those of its smallest budgets only (the rest
    depend on the results: :func:`sweep_is_consistent`)."""
    keys = set()
    first_success = spec.sweep == "first-success"
    for a in spec.attacks:
        budgets = (min(a.budgets),) if first_success and a.budgets else a.budgets
        for b in budgets or (None,):
            for i in image_ids:
                keys.add((a.key, -1.0 if b is None else float(b), int(i)))
    return keys


def sweep_is_consistent(spec: BenchSpec, df: pd.DataFrame) -> bool:
    """``sweep="first-success"``: each image's budgets of each budgeted attack are the smallest ones of
    its grid in order, every run but the last failed on a correctly classified image, and the last one
    succeeded, met a misclassified original, or was the grid's largest budget."""
    for a in spec.attacks:
        if not a.budgets:
            continue
        grid = sorted(float(b) for b in a.budgets)
        rows = df[df["attack"] == a.key].sort_values(["image_id", "budget"])
        for _, runs in rows.groupby("image_id", sort=False):
            m = len(runs)
            if runs["budget"].tolist() != grid[:m]:
                return False
            go_on = (runs["correct"] & ~runs["success"]).to_numpy()
            if not go_on[:-1].all() or (go_on[-1] and m < len(grid)):
                return False
    return True


def _foreign(meta: dict[str, Any], spec: BenchSpec, index: int, image_ids: np.ndarray) -> str:
    """Why a file's metadata belongs to another spec or other images ("" when it is this shard's)."""
    if meta.get("spec_hash") != spec.hash:
        return f"written for another spec (hash {str(meta.get('spec_hash'))[:12]})"
    if meta.get("shard_index") != index or meta.get("image_ids") != [int(i) for i in image_ids]:
        return "written for other images (shard index or image ids differ)"
    return ""


def read_shard(out: Path, spec: BenchSpec, index: int, image_ids: np.ndarray) -> tuple[pd.DataFrame | None, str]:
    """Read and check a shard file.

    Returns
    -------
    records, reason
        ``(DataFrame, "")`` for a valid file; ``(None, reason)`` when the file is missing,
        unreadable, of another spec or shard, or does not hold exactly the expected records.
    """
    import pyarrow.parquet as pq

    from smoothlab.records import validate_records

    path = shard_path(out, index)
    if not path.exists():
        return None, "missing"
    try:
        meta = _read_metadata(path)
        foreign = _foreign(meta, spec, index, image_ids)
        if foreign:
            return None, foreign
        raw = pq.read_table(path).to_pandas()
        if "checksum" not in meta:
            return None, "no content checksum"
        if meta["checksum"] != records_checksum(raw):
            return None, "content does not match its checksum (altered after it was written)"
        df = validate_records(raw, f"shard file {path.name}")
    except Exception as exc:  # unreadable / corrupt file: recompute it
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    # A NaN budget where the attack had budgets is a protocol error; encode NaN as -1 for the set.
    budgets = df["budget"].fillna(-1.0).to_numpy()
    got = list(zip(df["attack"].tolist(), budgets.tolist(), df["image_id"].tolist()))
    if spec.sweep == "first-success":
        extra = {k for k in got if k not in expected_keys(dataclasses.replace(spec, sweep="full"), image_ids)}
        complete = expected_keys(spec, image_ids) <= set(got) and not extra and sweep_is_consistent(spec, df)
    else:
        complete = set(got) == expected_keys(spec, image_ids)
    if len(got) != len(set(got)) or not complete:
        return None, "does not hold exactly the expected records"
    return df, ""


def _older_version_of(text: str, data: Any, spec: BenchSpec) -> bool:
    """``spec.json`` of an older spec version that reads as ``spec`` itself."""
    from smoothlab.bench.spec import SPEC_VERSION

    if not isinstance(data, dict) or not isinstance(data.get("version"), int) or data["version"] >= SPEC_VERSION:
        return False
    try:
        return BenchSpec.from_json(text) == spec
    except (TypeError, ValueError):
        return False


def read_spec(out: Path) -> BenchSpec:
    """The :class:`BenchSpec` of the run in the output folder ``out`` (its ``spec.json``).

    Raises
    ------
    FileNotFoundError
        ``out`` has no ``spec.json``.
    ValueError
        ``spec.json`` was written by another version of smoothlab (its stored hash is not the
        hash of the spec it reads as), so its shards would not be recognised.
    """
    path = Path(out).expanduser() / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"out must be the output folder of a benchmark run, but {path} does not exist")
    text = path.read_text()
    spec = BenchSpec.from_json(text)
    stored = json.loads(text).get("hash")
    if stored != spec.hash:
        raise ValueError(f"{path} was written by another version of smoothlab (spec hash {str(stored)[:12]}, "
                         f"read as {spec.hash[:12]}); run the benchmark again with this version")
    return spec


def prepare_out(out: Path, spec: BenchSpec, overwrite: bool) -> Path:
    """Create ``out`` for ``spec``, or check that it already belongs to ``spec``.

    Raises
    ------
    FileExistsError
        ``out`` holds results of another spec (or shard files without a spec.json) and
        ``overwrite`` is false. With ``overwrite=True`` every earlier result in ``out`` (of
        this spec too) is deleted and the run starts afresh; without it, the results of
        the same spec are resumed.
    NotADirectoryError
        ``out`` exists and is not a directory.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out must be a directory, but {out} is a file")
    spec_file = out / SPEC_FILE
    ours = False
    other = None
    if spec_file.exists():
        text, data = "", None
        try:
            text = spec_file.read_text()
            data = json.loads(text)
            other = data.get("hash")
            if not isinstance(other, str):
                raise ValueError(f"no spec hash in {SPEC_FILE}")
            ours = other == spec.hash
        except (OSError, ValueError, AttributeError):
            other = f"an unreadable {SPEC_FILE}"
        if other is not None and not ours and _older_version_of(text, data, spec):
            log.warning(
                "%s holds this spec written by an older smoothlab (spec version %s): its shards will be recomputed",
                out,
                data.get("version"),
            )
            other = None  # take the folder over: rewrite spec.json, shards are foreign by hash
            for name in REPORT_FILES:  # reports of the old version
                with contextlib.suppress(OSError):
                    (out / name).unlink()
    elif (out / SHARD_DIR).exists():
        other = f"{SHARD_DIR}/ without a {SPEC_FILE}"
    if overwrite or (other is not None and not ours):
        if not overwrite:
            raise FileExistsError(
                f"output folder {out} holds results of a different benchmark spec "
                f"({other if ' ' in str(other) else f'hash {str(other)[:12]}'}; this spec has hash {spec.hash[:12]}); "
                "pass overwrite=True to replace them, or choose another folder"
            )
        shutil.rmtree(out / SHARD_DIR, ignore_errors=True)
        shutil.rmtree(out / ADV_DIR, ignore_errors=True)
        ours = False
        for name in REPORT_FILES + (SPEC_FILE,):
            with contextlib.suppress(OSError):
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARD_DIR).mkdir(exist_ok=True)
    if not ours:
        doc = {"hash": spec.hash, **json.loads(spec.to_json())}
        _atomic_write_bytes(spec_file, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    return out


# --------------------------------------------------------------------------- adversarial images


def adversarials_path(out: Path, index: int) -> Path:
    """The Parquet file of shard ``index``'s adversarial images under the output folder ``out``."""
    return Path(out) / ADV_DIR / f"shard-{index:05d}.parquet"


def adversarials_checksum(adv: pd.DataFrame) -> str:
    """``"sha256:..."`` of an adversarials frame: :func:`records_checksum` of its plain columns,
    then the length and bytes of each image (column ``pixels``)."""
    h = hashlib.sha256(records_checksum(adv.drop(columns="pixels")).encode())
    for blob in adv["pixels"]:
        h.update(f"{len(blob)}\0".encode())
        h.update(bytes(blob))
    return "sha256:" + h.hexdigest()


def check_adversarials_folder(out: Path, save: bool) -> None:
    """Before a run that saves adversarial images: ``out`` must be new to shards, or have saved
    them from the start (its ``adversarials/`` folder); then that folder exists.

    Raises
    ------
    FileExistsError
        ``save`` and ``out`` holds shards written without saving adversarial images.
    """
    out = Path(out)
    has_dir = (out / ADV_DIR).is_dir()
    if not save:
        if has_dir:
            log.warning("%s holds saved adversarial images: the shards computed without save_adversarials will "
                        "have none (a later run with it recomputes them)", out)
        return
    if not has_dir and any((out / SHARD_DIR).glob("shard-*.parquet")):
        raise FileExistsError(
            f"output folder {out} holds shards written without save_adversarials, so it has no adversarial images "
            "to keep; run without save_adversarials to resume it, or pass overwrite=True (or another folder) to "
            "start afresh and save them"
        )
    (out / ADV_DIR).mkdir(exist_ok=True)


def write_adversarials(
    out: Path, spec: BenchSpec, index: int, image_ids: np.ndarray, adv: pd.DataFrame, records: pd.DataFrame
) -> Path:
    """Write the adversarial images of one shard, tagged like :func:`write_shard` and with the
    checksum of the shard's ``records``."""
    path = adversarials_path(out, index)
    write_parquet(
        path,
        adv,
        {
            "spec_hash": spec.hash,
            "shard_index": int(index),
            "image_ids": [int(i) for i in image_ids],
            "records_checksum": records_checksum(records),
            "checksum": adversarials_checksum(adv),
        },
    )
    return path


def _expected_adversarials(records: pd.DataFrame) -> pd.DataFrame:
    """Per attack and image with a success, the least distortion of the records (eq. 20's union)."""
    ok = records[records["success"]]
    return ok.groupby(["attack", "image_id"], sort=True)["distortion"].min()


def read_adversarials(
    out: Path, spec: BenchSpec, index: int, image_ids: np.ndarray, records: pd.DataFrame
) -> tuple[pd.DataFrame | None, str]:
    """Read and check the adversarials file of one shard against its (valid) ``records``.

    Returns
    -------
    adversarials, reason
        ``(DataFrame, "")`` for a valid file; ``(None, reason)`` when it is missing, unreadable,
        of another spec, shard or records, altered, or does not hold exactly one image per
        attack and successful image, at the records' least distortion.
    """
    import pyarrow.parquet as pq

    path = adversarials_path(out, index)
    if not path.exists():
        return None, "missing"
    try:
        meta = _read_metadata(path)
        foreign = _foreign(meta, spec, index, image_ids)
        if foreign:
            return None, foreign
        if meta.get("records_checksum") != records_checksum(records):
            return None, "written for other records of this shard"
        adv = pq.read_table(path).to_pandas()
        if meta.get("checksum") != adversarials_checksum(adv):
            return None, "content does not match its checksum (altered after it was written)"
    except Exception as exc:  # unreadable / corrupt file: recompute it
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    want = _expected_adversarials(records)
    got = adv.set_index(["attack", "image_id"])["distortion"].sort_index()
    if len(got) != len(want) or not got.index.equals(want.index) or not np.array_equal(got.to_numpy(), want.to_numpy()):
        return None, "does not hold exactly the least distorted success of each image and attack"
    return adv, ""
