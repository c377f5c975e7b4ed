"""The CPUs a process may use, and torch's thread count held to them in every attack (issue 19)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import smoothlab
from smoothlab import _threads
from smoothlab.attacks import pgd2
from smoothlab.data import mnist
from smoothlab.models import c4


def _cgroup(tmp_path: Path, v2: str | None = None, v1: tuple[str, str] | None = None) -> Path:
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0] + "\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1] + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "quota"),
    [
        ("150000 100000", None, 1.5),
        ("max 100000", None, None),
        (None, ("50000", "100000"), 0.5),
        (None, ("-1", "100000"), None),
        (None, None, None),
    ],
)
def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path: Path, v2: str | None, v1: tuple | None, quota: float | None) -> None:
    assert _threads.cgroup_cpu_quota(_cgroup(tmp_path, v2, v1)) == quota


def test_available_cpus_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "none").mkdir()
    assert smoothlab.available_cpus(tmp_path / "none") == affinity
    half = _cgroup(tmp_path, "50000 100000")  # half a CPU still needs one thread
    assert smoothlab.available_cpus(half) == 1
    many = tmp_path / "many"
    many.mkdir()
    assert smoothlab.available_cpus(_cgroup(many, f"{100000 * (affinity + 8)} 100000")) == affinity


def test_held_threads_lowers_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _threads.held_threads(1) as n:
            assert n == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with _threads.held_threads(8) as n:  # never raised above what the user set
            assert n == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _ThreadSpy(torch.nn.Module):
    """C4, recording torch's thread count at each forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.net = c4(pretrained=True)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.net(x)


def test_an_attack_under_a_one_cpu_quota_runs_on_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = mnist("test")
    model = _ThreadSpy()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(_threads, "_CGROUP", _cgroup(tmp_path, "100000 100000"))  # a container with 1 CPU
        pgd2(model, x[:4], y[:4], eps=1.0, iterations=2)
        assert model.seen and set(model.seen) == {1}
        assert torch.get_num_threads() == 2  # restored after the attack
        monkeypatch.setattr(_threads, "_CGROUP", tmp_path / "absent")  # no quota: the user's count
        model.seen.clear()
        pgd2(model, x[:4], y[:4], eps=1.0, iterations=2)
        assert set(model.seen) == {min(2, len(os.sched_getaffinity(0)))}
    finally:
        torch.set_num_threads(before)
