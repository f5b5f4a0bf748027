"""run.dir's lock between real processes on a real folder: atomic, and right about who holds it.

- two launches racing over a stale lock: exactly one wins, every time (repeated);
- a lock naming a live pid that now belongs to another process (started at another time) is taken over;
- a lock from another host: taken over by the same Slurm job (a requeue), otherwise refused with a message
  naming the holder and the override that takes it over (which then does);
- an empty lock file (left by a failed write on a full disk) does not block later launches.
"""

import json
import multiprocessing
import os
import socket
import subprocess
import time

import psutil
import pytest

from mos_nemo.engine.run_dir import LOCK_NAME, RunDirLock
from mos_nemo.errors import MosRunDirError

ROUNDS = 40


def _contender(run_dir, start, results) -> None:
    start.wait()  # both processes leave the barrier together
    try:
        RunDirLock(run_dir).acquire()
        results.put("won")
    except MosRunDirError:
        results.put("refused")
    start.wait()  # the winner holds the lock (stays alive) until the loser has decided


def _stale(run_dir) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    (run_dir / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))


def test_two_launches_racing_over_a_stale_lock_exactly_one_wins(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        run_dir = tmp_path / f"round{round_}"
        run_dir.mkdir()
        _stale(run_dir)
        start, results = context.Barrier(2), context.Queue()
        contenders = [context.Process(target=_contender, args=(run_dir, start, results)) for _ in range(2)]
        for process in contenders:
            process.start()
        verdicts = sorted(results.get(timeout=60) for _ in contenders)
        for process in contenders:
            process.join(timeout=60)
        assert verdicts == ["refused", "won"], (round_, verdicts)


def test_a_reused_pid_is_not_taken_for_the_holder(tmp_path):
    # pid 1 runs, but not the process that wrote the lock (that one started at another time)
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": 1, "pid_started": time.time() - 5.0}))
    lock = RunDirLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_holder_on_this_host_is_refused(tmp_path):
    holder = RunDirLock(tmp_path)
    holder.acquire()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:  # the same record, claimed by another live process: its start time matches, so it holds the lock
        record = dict(holder.record, pid=sleeper.pid, pid_started=psutil.Process(sleeper.pid).create_time())
        (tmp_path / LOCK_NAME).write_text(json.dumps(record))
        with pytest.raises(MosRunDirError, match=f"pid {sleeper.pid} on host"):
            RunDirLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_from_another_host(tmp_path, monkeypatch):
    other = {"host": "node-that-died", "pid": 4242, "pid_started": 1.0, "job": "777", "started": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    monkeypatch.setenv("SLURM_JOB_ID", "778")  # another job: its liveness cannot be checked from here
    with pytest.raises(MosRunDirError) as refused:
        RunDirLock(tmp_path).acquire()
    assert "pid 4242 on host node-that-died" in str(refused.value) and "Slurm job 777" in str(refused.value)
    assert "run.take_over_lock=true" in str(refused.value)
    taken = RunDirLock(tmp_path, take_over=True)
    taken.acquire()
    taken.release()

    (tmp_path / LOCK_NAME).write_text(json.dumps(other))
    monkeypatch.setenv("SLURM_JOB_ID", "777")  # the same job, requeued on this host
    requeued = RunDirLock(tmp_path)
    requeued.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["job"] == "777"
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == socket.gethostname()
    requeued.release()


def test_an_empty_lock_left_by_a_full_disk_does_not_block(tmp_path):
    empty = tmp_path / LOCK_NAME
    empty.write_text("")
    os.utime(empty, (time.time() - 60, time.time() - 60))  # written a minute ago
    lock = RunDirLock(tmp_path)
    lock.acquire()
    assert lock.held
    lock.release()
