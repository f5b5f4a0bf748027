"""Checkpoint integrity and the non-finite guard, on real files written by real runs.

- random bytes in a shard (same size) are caught by the manifest's CRC-32 at load: our error names step_N,
  the file, and offers the previous complete checkpoint; that checkpoint then resumes;
- a checkpoint without a manifest, or with an entry that does not parse or lacks the CRC its save recorded,
  is an error naming step_N (not silence, not a TypeError);
- a checkpoint without meta.json (an interrupted save that ``latest`` still names) is named as incomplete;
- an exploding LR: the state saved after the exploding update is marked bad by the next step's non-finite
  loss or gradients; the guard stops after ``train.nonfinite_limit`` steps naming the newest good checkpoint, which
  ``checkpoint.keep=1`` kept, and the natural next command (sane LR, resume=auto) trains to the end.
"""

import json
import math
import os

import pytest

from mos_nemo.engine.training.checkpoint_files import verify_manifest
from mos_nemo.logs import read_jsonl
from tests.integration.reliability_runs import complete_checkpoints, launch, root_cause

RUN = ["train.max_steps=6", "checkpoint.every=2"]


@pytest.mark.slow
@pytest.mark.distributed
def test_corrupt_and_incomplete_checkpoints_raise_our_error_and_offer_the_previous_one(tmp_path):
    run_dir = tmp_path / "run"
    first = launch(run_dir, *RUN, "train.stop_after=4")
    assert first.returncode == 0, first.output[-3000:]
    assert complete_checkpoints(run_dir) == ["step_0000002", "step_0000004"]
    step4, step2 = run_dir / "checkpoints" / "step_0000004", run_dir / "checkpoints" / "step_0000002"

    shard = max(step4.glob("*.distcp"), key=lambda p: p.stat().st_size)
    with open(shard, "r+b") as handle:  # flip bytes in place: the size stays the same
        handle.seek(shard.stat().st_size // 2)
        handle.write(os.urandom(64))
    corrupt = launch(run_dir, *RUN)
    assert corrupt.returncode != 0, corrupt.output[-3000:]
    message = root_cause(corrupt.output)
    assert message.startswith("mos_nemo: checkpoint step_0000004"), corrupt.output[-3000:]
    assert shard.name in message and "CRC-32" in message
    assert f"checkpoint.resume={step2}" in message
    assert corrupt.output.count("Traceback") == 1  # torchrun's own (ChildFailedError); none from the worker

    manifest = step4 / "manifest.json"
    saved_manifest = manifest.read_text()
    manifest.unlink()  # deleted: the files can no longer be checked, which is an error, not silence
    unchecked = launch(run_dir, *RUN)
    assert unchecked.returncode != 0
    message = root_cause(unchecked.output)
    assert message.startswith("mos_nemo: checkpoint step_0000004") and "no manifest.json" in message, message
    entries = json.loads(saved_manifest)
    name = sorted(entries["files"])[0]
    for broken, expected in ((dict(entries, files={**entries["files"], name: "12"}), f"entry {name!r} is '12'"),
                             (dict(entries, files={k: [v[0], None] for k, v in entries["files"].items()}),
                              "no CRC-32 for")):  # a periodic save recorded CRCs: null ones are tampering
        manifest.write_text(json.dumps(broken))
        assert any(expected in problem for problem in verify_manifest(step4, with_checksums=True)), expected
    manifest.write_text(saved_manifest)

    (step4 / "meta.json").unlink()  # as if the save had been killed between the rename and meta.json
    incomplete = launch(run_dir, *RUN)
    assert incomplete.returncode != 0
    message = root_cause(incomplete.output)
    assert "step_0000004" in message and "never completely written" in message, incomplete.output[-3000:]
    assert f"checkpoint.resume={step2}" in message

    resumed = launch(run_dir, *RUN, f"checkpoint.resume={step2}")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert complete_checkpoints(run_dir)[-1] == "step_0000006"


@pytest.mark.slow
@pytest.mark.distributed
def test_exploding_lr_then_the_natural_next_command_trains_to_the_end(tmp_path):
    """The state saved right after an exploding update is poisoned although that step's loss was finite
    (computed before the update): it must be marked bad by the next step, never offered, never
    resumed by ``auto``, and ``keep=1`` must not delete the good one before it. bf16, where megatron itself
    does not check gradients."""
    run_dir = tmp_path / "run"
    run = ["train.max_steps=8", "checkpoint.every=1", "checkpoint.keep=1", "model.dtype=bf16"]
    sane = launch(run_dir, *run, "train.stop_after=2")
    assert sane.returncode == 0, sane.output[-3000:]

    exploding = launch(run_dir, *run, "optim.lr=1e30", "checkpoint.allow_changes=[optim.lr]")
    assert exploding.returncode != 0, exploding.output[-3000:]
    message = root_cause(exploding.output)
    assert "not finite for 3 steps in a row (steps 4-6" in message, exploding.output[-3000:]
    assert f"newest good checkpoint (the step after it had a finite loss and gradients) is " \
           f"{run_dir / 'checkpoints' / 'step_0000002'}" in exploding.output  # torchrun shortens the root cause
    assert "from step_0000003's weights are not finite: that checkpoint is marked bad" in exploding.output
    assert complete_checkpoints(run_dir) == ["step_0000002", "step_0000003"]  # keep=1 kept the good one
    records = read_jsonl(run_dir / "train.jsonl")
    # bf16 grads checked: steps 4 and 5 were skipped (step 6 raised before its record)
    assert [(r["step"], r["update_applied"]) for r in records if r["step"] >= 4] == [(4, False), (5, False)]
    assert "optimizer step NOT applied" in exploding.output

    natural = launch(run_dir, *run, "checkpoint.allow_changes=[optim.lr]", "checkpoint.resume=auto")
    assert natural.returncode == 0, natural.output[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / 'step_0000002'} at step 2" in natural.output
    tail = read_jsonl(run_dir / "train.jsonl")[-6:]
    assert [r["step"] for r in tail] == [3, 4, 5, 6, 7, 8]
    assert all(math.isfinite(r["loss"]) and r["update_applied"] for r in tail), tail
