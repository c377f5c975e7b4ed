"""The CPUs a process may use, and torch's thread count held to them in every attack (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
    monkeypatch.setenv("SMOOTHLAB_THREADS", "available")  # the quota alone, whatever else runs on this machine
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


# ---------------------------------------------------------------------------- a busy machine without a quota
def _spinners(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_cpus() reads the load afresh, and SMOOTHLAB_THREADS is unset."""
    monkeypatch.setattr(_threads, "_CACHE_S", 0.0)
    monkeypatch.delenv("SMOOTHLAB_THREADS", raising=False)


def test_processes_that_spin_take_their_cpus_off(fresh: None) -> None:
    cpus = smoothlab.available_cpus()
    procs = _spinners(cpus)
    try:
        time.sleep(0.3)
        others = _threads.other_runnable()
        free = smoothlab.free_cpus()
    finally:
        _stop(procs)
    assert others is not None and others >= cpus  # each spinner is a runnable task of another process
    assert free == 1


def test_own_running_threads_are_not_others(tmp_path: Path, fresh: None) -> None:
    # a kernel that counts one runnable task: the calling thread, always running while it reads
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.00 0.00 0.00 1/100 1234\n")
    assert _threads._own_running(_threads._TASKS) >= 1
    assert _threads.other_runnable(loadavg) == 0
    loadavg.write_text("0.00 0.00 0.00 40/100 1234\n")
    assert 40 - len(os.listdir("/proc/self/task")) <= _threads.other_runnable(loadavg) <= 39
    assert _threads.other_runnable(tmp_path / "absent") is None  # macOS, Windows: unknown
    (tmp_path / "bad").write_text("garbage\n")
    assert _threads.other_runnable(tmp_path / "bad") is None


def test_a_quiet_machine_leaves_the_available_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh: None) -> None:
    (tmp_path / "loadavg").write_text("0.00 0.00 0.00 1/100 1234\n")  # only the calling thread runs
    monkeypatch.setattr(_threads, "_LOADAVG", tmp_path / "loadavg")
    assert smoothlab.free_cpus() == smoothlab.available_cpus()


def test_an_unknown_load_leaves_the_available_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh: None) -> None:
    procs = _spinners(2)
    try:
        time.sleep(0.3)
        monkeypatch.setattr(_threads, "_LOADAVG", tmp_path / "absent")
        assert smoothlab.free_cpus() == smoothlab.available_cpus()
    finally:
        _stop(procs)


def test_free_cpus_keeps_its_answer_for_a_second(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_threads, "_CACHE_S", 60.0)
    _threads._cache.clear()
    first = smoothlab.free_cpus()
    monkeypatch.setattr(_threads, "_LOADAVG", tmp_path / "absent")  # would give available_cpus()
    monkeypatch.setattr(_threads, "available_cpus", lambda root=None: first + 5)
    assert smoothlab.free_cpus() == first
    _threads._cache.clear()
    assert smoothlab.free_cpus() == first + 5


@pytest.mark.skipif(smoothlab.available_cpus() < 2, reason="one CPU: one thread whatever the load")
def test_an_attack_beside_spinning_processes_runs_on_fewer_threads(monkeypatch: pytest.MonkeyPatch, fresh: None) -> None:
    x, y = mnist("test")
    model = _ThreadSpy()
    cpus = smoothlab.available_cpus()
    before = torch.get_num_threads()
    torch.set_num_threads(cpus)
    procs = _spinners(cpus)
    try:
        time.sleep(0.3)
        pgd2(model, x[:4], y[:4], eps=1.0, iterations=2)
        assert set(model.seen) == {1}
        assert torch.get_num_threads() == cpus  # restored after the attack
        model.seen.clear()
        monkeypatch.setenv("SMOOTHLAB_THREADS", "available")  # the opt-out: the CPUs the process may use
        pgd2(model, x[:4], y[:4], eps=1.0, iterations=2)
        assert set(model.seen) == {cpus}
        model.seen.clear()
        monkeypatch.setenv("SMOOTHLAB_THREADS", "keep")  # torch's count untouched, even above the CPUs
        torch.set_num_threads(cpus + 1)
        pgd2(model, x[:4], y[:4], eps=1.0, iterations=2)
        assert set(model.seen) == {cpus + 1}
    finally:
        _stop(procs)
        torch.set_num_threads(before)


def test_a_bad_thread_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOOTHLAB_THREADS", "many")
    with pytest.raises(ValueError, match=r"SMOOTHLAB_THREADS must be one of free, available, keep.*'many'"):
        with _threads.held_threads():
            pass


def test_a_bench_shard_keeps_the_callers_thread_count_whatever_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's records must not depend on the load: a shard's attacks run at the thread count the caller
    set (the runner: 1 by default), where an attack outside the bench is held to the free CPUs (here a made-up
    1-CPU quota stands for a busy machine)."""
    from smoothlab.bench import AttackSpec, BenchSpec, register_model, run_shard, unregister_model

    monkeypatch.setenv("SMOOTHLAB_THREADS", "available")
    monkeypatch.setattr(_threads, "_CGROUP", _cgroup(tmp_path, "100000 100000"))
    spy = _ThreadSpy()
    register_model("thread-spy", lambda device: spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spec = BenchSpec(model="thread-spy", attacks=(AttackSpec("pgd2", {"iterations": 2}, (1.0,)),), n_images=2,
                         batch_size=2, shard_size=2, visibility=False, device="cpu")
        run_shard(spec, 0, [0, 1])
        assert spy.seen and set(spy.seen) == {2}  # kept: the caller's count
        spy.seen.clear()
        x, y = mnist("test")
        pgd2(spy, x[:2], y[:2], eps=1.0, iterations=2)  # the same attack outside a shard: held to the quota
        assert set(spy.seen) == {1}
        spy.seen.clear()
        with _threads.kept_threads():
            pgd2(spy, x[:2], y[:2], eps=1.0, iterations=2)
        assert set(spy.seen) == {2} and torch.get_num_threads() == 2
    finally:
        unregister_model("thread-spy")
        torch.set_num_threads(before)
