"""Shared helper for multi-process tests: run a module-level function on N local ranks over gloo.

    from tests.distributed import run_distributed

    def _check(tmp):                      # module level, so spawned ranks can import it
        state = initialize_parallel(tp=2, pp=1, seed=0)
        ...
        destroy_parallel()
        return value                      # picklable; one per rank

    @pytest.mark.distributed
    def test_x(tmp_path):
        results = run_distributed(_check, 2, str(tmp_path))

Each rank sees the torchrun environment, so ``initialize_parallel`` works unchanged. A watchdog
(``faulthandler.dump_traceback_later``) prints every thread's stack and kills a rank stuck in a collective.
"""

from mos_nemo.engine.launch import spawn_ranks

WATCHDOG_S = 300


def run_distributed(fn, world_size: int, *args, timeout_s: float = WATCHDOG_S) -> list:
    """``fn(*args)`` on ``world_size`` ranks; their results in rank order (RuntimeError if one fails)."""
    return spawn_ranks(fn, world_size, *args, timeout_s=timeout_s)
