"""`python -m mos_nemo.convert` as a user runs it, on the inputs users have: a checkpoint of a run trained on
a random model (it carries what its export needs), an HF folder of weights and config without tokenizer
files, `--hf asset:smollm2` (the model sources training accepts), and mistakes, answered by one error line
that names the flag the user typed (no traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from mos_nemo.engine.hf.weights import TOKENIZER_FILES
from tests.distributed import ROOT, launch_training


def _convert(*args: str, ok: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "mos_nemo.convert", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    if ok:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def _generates(folder: Path) -> None:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        out = model.generate(tokens, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


@pytest.mark.slow
def test_a_run_on_a_random_model_exports_without_naming_its_source(tmp_path):
    launch_training(tmp_path / "run", "train.max_steps=2", "checkpoint.every=0", "mixing.strategy=static")
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000002"
    assert (checkpoint / "hf_config.json").is_file() and (checkpoint / "tokenizer" / "tokenizer.json").is_file()
    done = _convert("export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "hf"))
    assert "reading" in done.stdout and "writing" in done.stdout  # progress, not 45 s of silence
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer.chat_template  # SmolLM2's, the one training rendered with
    assert transformers.AutoConfig.from_pretrained(tmp_path / "hf").num_hidden_layers == 2
    _generates(tmp_path / "hf")


@pytest.mark.slow
def test_an_hf_folder_without_tokenizer_exports_without_template_and_says_so(tmp_path):
    source = tmp_path / "weights_only"
    save_tiny_hf_model(source, "qwen2", seed=3)
    for name in TOKENIZER_FILES:
        if name != "generation_config.json":
            (source / name).unlink(missing_ok=True)
    _convert("import", "--hf", str(source), "--out", str(tmp_path / "ckpt"))
    done = _convert("export", "--ckpt", str(tmp_path / "ckpt"), "--out", str(tmp_path / "hf"))
    assert "without tokenizer or chat template" in done.stdout, done.stdout
    assert not (tmp_path / "hf" / "tokenizer_config.json").exists()
    _generates(tmp_path / "hf")


def test_hf_accepts_the_asset_training_accepts(tmp_path):
    """`--hf asset:smollm2` resolves to the HF folder training builds (and says where it lies); the command then
    stops at the next check (here a missing --ckpt), so nothing large is built."""
    done = _convert("export", "--hf", "asset:smollm2", "--ckpt", str(tmp_path / "absent"), "--out",
                    str(tmp_path / "o"), ok=False)
    assert "--hf asset:smollm2 is the HF folder" in done.stdout and "smollm2-135m-instruct" in done.stdout
    assert done.returncode == 2 and "--ckpt" in done.stderr and "model.hf_path" not in done.stderr


def test_mistakes_name_the_flag_without_a_traceback(tmp_path):
    cases = [
        (("import", "--hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")), "--hf"),
        (("verify", "--hf", "asset:llama9"), "--hf"),
        (("export", "--ckpt", str(tmp_path), "--out", str(tmp_path / "o")), "--hf"),  # no hf_config.json
        (("export", "--ckpt", str(tmp_path / "absent"), "--out", str(tmp_path / "o")), "--ckpt"),
    ]
    for args, flag in cases:
        done = _convert(*args, ok=False, timeout=120)
        assert done.returncode == 2, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr and flag in done.stderr, (args, done.stderr)
        assert "model.hf_path" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
