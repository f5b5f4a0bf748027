"""The training loop (paper Algorithm 1 on megatron-core), in the order it runs:

    build (tokenizer, datasets, blend, model, DDP, optimizer, reward hook) -> resume -> for each step:
    draw the global batch -> this rank's micro batches -> forward/backward/AdamW -> log ->
    every mixing.update_every steps: reward hook -> new weights -> blend.set_weights ->
    checkpoint when due, on the last step, or after SIGTERM/SIGINT (then stop, exit 0).

The signal path is short (interrupt.py). With pp == 1 a signal abandons the step in flight at its next
micro-batch boundary, undoes it and saves the previous step (unless already saved). With pp > 1, one micro
batch, or a signal in the last one, the step finishes and skips its MoS update (the checkpoint records it
as pending; the resumed launch runs it first, so the run still continues exactly). Saves are fast, unhashed.

Every rank runs the same loop; the blend draw is a pure function of (seed, step, weights), so the ranks
agree on each global batch without talking. Only rank 0 writes logs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import torch

from mos_nemo.config import MosConfig, non_default_settings, to_yaml
from mos_nemo.data import local_micro_batches, pad_token_id
from mos_nemo.engine.training import build
from mos_nemo.engine.training.checkpoint import (
    find_latest, load_checkpoint, rng_state, save_checkpoint, set_rng_state, sharding_format)
from mos_nemo.engine.training.finite import FiniteGuard
from mos_nemo.engine.training.interrupt import StepInterrupted, StepSnapshot
from mos_nemo.engine.training.resume_config import (
    changed_settings, check_resume_changes, describe_changes, launch_config_path)
from mos_nemo.engine.training.optim import LinearSchedule, build_optimizer, set_learning_rate
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.model.inputs import to_device
from mos_nemo.engine.training.deadline import Deadline
from mos_nemo.engine.training.run_state import RunState
from mos_nemo.engine.training.save_queue import start_save_queue, stop_save_queue
from mos_nemo.engine.training.step import synchronize_params, train_step, wrap_for_training
from mos_nemo.logs import RunLogger, format_weights

log = logging.getLogger(__name__)


class Trainer:
    """One training run: ``Trainer(config, parallel).run()`` returns the last completed step."""

    def __init__(self, config: MosConfig, parallel: ParallelState):
        self.config, self.parallel = config, parallel
        self.tokenizer, tokenizer_dir = build.load_tokenizer(config, parallel)
        self.pad_id = pad_token_id(self.tokenizer)
        self.datasets, heldout = build.split_validation(config, build.load_datasets(config, self.tokenizer, parallel))
        self.names = [d.name for d in self.datasets]
        self.max_steps = build.total_steps(config, self.datasets)
        self.blend = build.build_blend(config, self.datasets, parallel)
        self.hf_config, hf_folder = build.build_hf_config(config, self.tokenizer, parallel)
        self.tokenizer_dir = tokenizer_dir
        model = build.build_training_model(config, self.hf_config, hf_folder, parallel)
        use_distributed = config.parallel.distributed_optimizer
        self.model = wrap_for_training(model, use_distributed)
        bf16 = build.params_dtype(config.model.dtype) == torch.bfloat16
        self.optimizer = build_optimizer(self.model, config.optim, use_distributed, bf16)
        self.schedule = LinearSchedule.from_config(config.optim, self.max_steps)
        self.reward_hook = build.build_reward_hook(config, self.datasets, self.hf_config, self.pad_id, parallel,
                                              hf_folder)
        build.apply_exclusions(config, self.blend, self.reward_hook, self.names)
        self.validation = build.build_validation(config, heldout, self.hf_config, self.pad_id, parallel)
        self.step = 0
        per_rank = config.train.global_batch_size // (parallel.dp * config.train.micro_batch_size)
        # A step can stop between its micro batches. Packed steps have at most per_rank micro batches too
        # (rows <= examples), so a step that can raise StepInterrupted always has its snapshot.
        self.state = RunState(abortable=parallel.pp == 1 and per_rank > 1)
        self.finite = FiniteGuard(config.run.dir, config.train.nonfinite_limit)
        self.resume_note = ""
        self.resumed_save_seconds: Optional[float] = None  # how long the resumed checkpoint's save took
        self.mixing_seconds = 0.0  # MoS wall time not yet reported in train.jsonl
        self.logger: Optional[RunLogger] = None

    # ---- resume and checkpoints ------------------------------------------------------------------
    def _resume(self) -> Optional[int]:
        """Load the checkpoint named by ``checkpoint.resume``; return its step (None for a fresh start)."""
        resume = self.config.checkpoint.resume
        folder = None if resume == "none" else (find_latest(self.config.run.dir) if resume == "auto" else Path(resume))
        if folder is None:
            return None
        changes = self._check_config_changes(folder)
        state = load_checkpoint(folder, self.model, self.optimizer, self.parallel)
        self.blend.load_state_dict(state["blend"])
        if self.reward_hook is not None and state["mixing"] is not None:
            self.reward_hook.load_state_dict(state["mixing"])
        self.step = state["step"]
        self.state.resumed(state, folder)
        self.resumed_save_seconds = state.get("save_seconds")
        build.apply_exclusions(self.config, self.blend, self.reward_hook, self.names)
        saved = state["saved_layout"]
        restored = "model, optimizer, LR schedule, data order, mixing state"
        if state["rng_restored"]:
            restored += " and every rank's RNG state"
        else:  # per-rank RNG streams do not map onto another layout; the data order never needed them
            restored += (f"; the per-rank RNG states (dropout) were saved at tp={saved['tp']} pp={saved['pp']} "
                         f"dp={saved['dp']} and start afresh from run.seed under this layout (data order and MoS "
                         "are keyed on (seed, step) and continue exactly)")
        self.resume_note = f"resumed from {folder} at step {self.step}: restored {restored}"
        if changes:
            self.resume_note += f"\nsettings changed since that checkpoint: {describe_changes(changes)}"
        return self.step

    def _check_config_changes(self, folder: Path) -> dict:
        """Compare the checkpoint's config with this launch's; refuse exactness-breaking changes not allowed."""
        saved = folder / "config.yaml"
        if not saved.is_file():  # checkpoints from before configs were stored in them
            saved = Path(self.config.run.dir) / "config.yaml"
        if not saved.is_file():
            return {}
        changes = changed_settings(saved.read_text(), self.config)
        check_resume_changes(changes, list(self.config.checkpoint.allow_changes), folder)
        return changes

    def _save(self, final: bool = False, signalled: bool = False) -> None:
        if self.finite.failing:  # never let a non-finite state replace (or, with keep, prune) a finite one
            self.logger.print(f"step {self.step}: not saving a checkpoint, the loss or grad norm is not finite")
            return
        trainer_state = {
            "step": self.step, "schedule": self.schedule.state_dict(), "blend": self.blend.state_dict(),
            "mixing": self.reward_hook.state_dict() if self.reward_hook is not None else None,
            "names": self.names, **self.state.checkpoint_fields(),
        }
        synchronize_params(self.model)  # the overlapped param all-gather must land before the save reads them
        checkpoint = self.config.checkpoint
        started = time.perf_counter()
        sharding = sharding_format(checkpoint.format, final)
        self.logger.print(f"saving checkpoint step {self.step} ({'final, ' if final else ''}{sharding}) ...")
        folder = save_checkpoint(self.config.run.dir, self.step, self.model, self.optimizer, trainer_state,
                                 self.parallel, keep=checkpoint.keep,
                                 sharding=sharding_format(checkpoint.format, final), checksums=not signalled,
                                 config_yaml=to_yaml(self.config), hf_config=self.hf_config,
                                 tokenizer_dir=self.tokenizer_dir)
        seconds = time.perf_counter() - started
        self.state.saved(self.step, folder, seconds)
        self.logger.print(f"saved checkpoint {folder} ({seconds:.1f}s)")

    # ---- mixing ----------------------------------------------------------------------------------
    def _weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.blend.weights.tolist()))

    def _counts(self) -> dict[str, int]:
        return self.blend.batch_counts if self.config.mixing.mode == "batch" else self.blend.counts

    def _maybe_update_mixture(self) -> None:
        """The mixing callback point: every ``mixing.update_every`` steps the hook returns new weights."""
        if self.reward_hook is None or not self.reward_hook.should_update(self.step):
            return
        started = time.perf_counter()
        update = self.reward_hook(self.model[0], self.step)
        self.blend.set_weights(update.weights)
        as_dict = lambda values: None if values is None else dict(zip(self.names, values.tolist()))  # noqa: E731
        raw = as_dict(update.rewards_raw)
        if raw is not None and update.scored is not None:  # reward budget: only the scored have a raw reward
            raw = {name: value for (name, value), scored in zip(raw.items(), update.scored.tolist()) if scored}
        self.logger.log_mixture(self.step, self._weights(), self._counts(), raw, as_dict(update.rewards))
        self.mixing_seconds += time.perf_counter() - started
        if update.skipped:
            self.logger.print(f"step {self.step}: mixing update skipped (non-finite reward); weights kept")
        else:
            shown = format_weights(self._weights(), self.logger.start_weights())
            mixing = self.config.mixing
            what = f"MoS update ({mixing.reward}, " if mixing.strategy == "mos" else f"{mixing.strategy} update ("
            self.logger.print(f"step {self.step}: {what}{update.seconds:.2f}s) -> weights {shown}")

    def _validate(self) -> None:
        """Score the held-out examples (validation.jsonl, validation_examples.jsonl); outside the step's
        timing, so train.jsonl's ``seconds`` stay training time."""
        self.logger.log_validation(self.step, *self.validation(self.model[0]))

    # ---- the loop --------------------------------------------------------------------------------
    def _one_step(self) -> None:
        """One optimizer step and its MoS update, unless the ranks agree to stop (``self.state`` learns which)."""
        # Time already spent on MoS before this step (the theta0 pool, scored before step 1) counts in it.
        started = time.perf_counter() - self.mixing_seconds
        snapshot = StepSnapshot.take(self.blend, self.optimizer, rng_state) if self.state.abortable else None
        draw = self.blend.draw()
        train = self.config.train
        pad_multiple = self.config.data.pad_to_multiple_of * (self.parallel.tp if torch.cuda.is_available() else 1)
        if self.parallel.pp > 1:  # the pipeline sends [s, b, h] tensors of one fixed shape between stages
            pad_multiple = train.seq_length
        micro_batches = local_micro_batches(
            draw, self.datasets, train.micro_batch_size, self.pad_id, seq_length=train.seq_length,
            pack=train.pack, pad_to_multiple_of=pad_multiple, fixed_rows=self.parallel.pp > 1,
        )
        micro_batches = [to_device(b, self.parallel.device) for b in micro_batches]  # pinned, non-blocking
        self.step += 1
        lr = self.schedule.lr_at(self.step)
        set_learning_rate(self.optimizer, lr)
        try:
            result = train_step(self.model, self.optimizer, micro_batches, self.parallel, len(self.names),
                                stop_requested=lambda: self.state.signal.requested)
        except StepInterrupted as interruption:  # nothing applied: undo the draw, LR and RNG; no log record
            snapshot.restore(self.blend, self.optimizer, set_rng_state)
            self.state.step_abandoned(self.step, interruption)
            self.step -= 1
            return
        self.finite.judge(self.state.first_loss_after(), self.step, result.loss, result.grad_norm,
                          self.parallel.rank == 0, self.logger.print)
        self.finite.check(self.step, result.loss, result.grad_norm, self.logger.print)
        if self.reward_hook is not None:  # ODM's reward: this step's losses, and the weights it was drawn with
            self.reward_hook.observe(self.step, result.dataset_losses, self.blend.weights)
        updating = self.reward_hook is not None and self.reward_hook.should_update(self.step)
        # agreed in the step's all-reduce; a signalled step saves at once and owes its MoS update
        self.state.step_finished(result.stop_requested, updating)
        if not self.state.stopping:
            self._maybe_update_mixture()  # after the step's update, before its log: `seconds` has the reward pass
            if updating:  # a signal during a long update: save now, not after one more step
                self.state.stop_between(self.state.signal.agreed(self.parallel))
        record = {"step": self.step, "loss": result.loss}
        if self.config.mixing.mode == "batch":
            record["dataset"] = self.names[int(draw.dataset_ids[0])]
        else:
            counts = torch.bincount(draw.dataset_ids, minlength=len(self.names)).tolist()
            record["counts"] = dict(zip(self.names, counts))
        if not result.update_ok:  # megatron's update_successful: it skips a step with non-finite gradients
            log.warning("step %d: optimizer step NOT applied (non-finite gradients; grad norm %s); the weights "
                        "are unchanged", self.step, result.grad_norm)
        record.update(lr=lr, tokens=result.tokens, seconds=time.perf_counter() - started,
                      grad_norm=result.grad_norm, update_applied=result.update_ok, loss_tokens=result.loss_tokens,
                      dataset_loss={n: v for n, v in zip(self.names, result.dataset_losses) if v is not None})
        if self.reward_hook is not None:  # wall time spent by MoS within this step (reward pass, psi update)
            record["mixing_seconds"], self.mixing_seconds = self.mixing_seconds, 0.0
        self.logger.log_step(record, self._weights())

    def run(self) -> int:
        """Train from the latest checkpoint (or from scratch) to ``max_steps`` or ``train.stop_after``."""
        config, parallel = self.config, self.parallel
        resumed = self._resume()
        last = min(self.max_steps, config.train.stop_after or self.max_steps)
        if resumed is not None and resumed >= self.max_steps:
            if parallel.rank == 0:
                print(f"mos_nemo: nothing to do: {config.run.dir} already finished all {self.max_steps} steps "
                      f"(checkpoint step {resumed}). To train longer, raise train.max_steps and add "
                      "checkpoint.allow_changes=[train.max_steps]; to start over, use checkpoint.resume=none "
                      "or another run.dir", flush=True)
            return self.step
        self.logger = RunLogger(config.run.dir, self.max_steps, resumed, enabled=parallel.rank == 0)
        start_save_queue()  # before any save and any signal: megatron's save queue must outlive a group SIGTERM
        self.state.signal.install()
        try:
            if parallel.rank == 0 and resumed is None:  # a fresh start: the earlier launches' configs are gone
                for stale in Path(config.run.dir).glob("config.*.yaml"):
                    stale.unlink()
            config_path = launch_config_path(config.run.dir) if parallel.rank == 0 else None
            self.logger.write_config(to_yaml(config), non_default_settings(config), path=config_path)
            self.logger.print(f"datasets: {', '.join(f'{d.name}={len(d)}' for d in self.datasets)}; "
                              f"{self.max_steps} steps; tp={parallel.tp} pp={parallel.pp} dp={parallel.dp}"
                              + (f"; held out {config.validation.holdout} per dataset for validation"
                                 if self.validation is not None else "")
                              + (f"; {self.resume_note}" if resumed is not None else ""))
            prepared = time.perf_counter()
            if self.reward_hook is not None:  # theta0's reference pool, scored before the first update
                self.reward_hook.prepare(self.model[0])
            self.mixing_seconds = time.perf_counter() - prepared  # counted in the first step's record
            if resumed is None:
                self.logger.log_mixture(0, self._weights(), self._counts())
            if self.state.pending_update:  # the signalled step's MoS update, skipped to save in time
                self._maybe_update_mixture()
                self.state.pending_update_ran()
            if self.validation is not None and (resumed is None or self.state.pending_validation):
                self._validate()  # step 0's held-out loss, or the one a signalled step skipped
                self.state.pending_validation_ran()
            checkpoint = config.checkpoint
            self.state.deadline = Deadline.find(config.train.time_limit, self.resumed_save_seconds)
            if self.state.deadline is not None:
                self.state.deadline.step_boundary()
                self.logger.print(f"deadline: {self.state.deadline.describe()}; this launch saves and stops "
                                  "before it")
            while self.step < last:
                self._one_step()
                if self.state.abandoned is not None:
                    self._stop_mid_step()
                    break
                self.state.check_deadline(self.parallel)
                if self.validation is not None and self.validation.due(self.step, self.max_steps):
                    if self.state.validation_due():  # a stopping step saves first, scores on resume
                        self._validate()
                save = self.state.save_due(self.step, last, self.max_steps, checkpoint.every, checkpoint.save_final)
                if save is not None:
                    self._save(final=save.final, signalled=save.signalled)
                    if not self.state.stopping and self.step < last:  # a signal during a periodic save
                        self.state.stop_between(self.state.signal.agreed(self.parallel))
                if self.state.stopping:
                    self.logger.print(self.state.stop_message(self.step))
                    break
            if config.checkpoint.export_hf and self.step == self.max_steps:
                self._export()
            return self.step
        finally:
            self.state.signal.uninstall()
            stop_save_queue()
            self.logger.close()

    def _stop_mid_step(self) -> None:
        """A signal abandoned the step in flight: save the state after the previous step (fast format)."""
        if self.step == 0:
            saved = "nothing was trained yet, so no checkpoint; the next launch starts afresh"
        elif self.state.saved_step == self.step:
            saved = f"step {self.step} is already saved"
        else:
            self._save(signalled=True)
            saved = f"saved step {self.step}" if self.state.saved_step == self.step else f"step {self.step} not saved"
        message = f"stopped by a signal during {self.state.abandoned}: {saved}; resume with the same command"
        self.logger.print(message)
        if self.parallel.rank > 0:  # rank 0 printed it; the others note where they stopped in their own log
            log.info(message)

    def _export(self) -> None:
        from mos_nemo.engine.hf.weights import export_hf

        out = Path(self.config.run.dir) / "hf"
        self.logger.print(f"exporting the fine-tuned model as a Hugging Face folder to {out} ...")
        synchronize_params(self.model)
        export_hf(self.model[0].module, self.hf_config, out, tokenizer_dir=self.tokenizer_dir)
        self.logger.print(f"exported the fine-tuned model as a Hugging Face folder: {out}")
