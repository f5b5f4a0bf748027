"""The training run: build its parts (build.py), the loop (loop.py), one optimizer step (step.py), AdamW and
the LR schedule (optim.py), checkpoints (checkpoint.py) and the MoS reward hook (reward_hook.py, with its
forward pass in reward_pass.py)."""
