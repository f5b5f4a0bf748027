"""HF <-> megatron conversion on real megatron-core over gloo: logits within 1e-4 of HF transformers at
TP=2 (with and without sequence parallelism) and PP=2 for all three families, export(import(x)) == x bit
for bit across a TP=2 -> PP=2 reshard, the exported folder loads in transformers and generates, and the CLI
prints the logit difference as its last line (spawned and under torchrun)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from tests.distributed import run_distributed

FAMILIES = ("llama", "qwen2", "gemma")
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_hf")
    for seed, family in enumerate(FAMILIES):
        save_tiny_hf_model(root / family, family, seed=seed)
    return root


def _verify_families(root: str, tp: int, pp: int, sequence_parallel: bool) -> dict:
    """On one rank: build, load and compare every family at the given layout."""
    from mos_nemo.engine.hf.verify import max_logit_difference
    from mos_nemo.engine.hf.weights import load_hf_weights
    from mos_nemo.engine.model.gpt import build_model, load_hf_config
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel

    diffs = {}
    for family in FAMILIES:
        folder = Path(root) / family
        config = load_hf_config(folder)
        state = initialize_parallel(tp=tp, pp=pp, seed=0, sequence_parallel=sequence_parallel)
        model = build_model(config, params_dtype=torch.float32, sequence_parallel=sequence_parallel)
        load_hf_weights(model, folder, config)
        diffs[family] = max_logit_difference(model, folder, config.vocab_size, state.device)
        destroy_parallel()
    return diffs


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("tp,pp,sequence_parallel", [(2, 1, False), (2, 1, True), (1, 2, False)],
                         ids=["tp2", "tp2-sp", "pp2"])
def test_logits_match_hf_in_parallel(hf_dirs, tp, pp, sequence_parallel):
    diffs = run_distributed(_verify_families, tp * pp, str(hf_dirs), tp, pp, sequence_parallel)
    assert diffs[0] == diffs[1]  # every rank reports the same all-reduced number
    assert set(diffs[0]) == set(FAMILIES)
    assert all(diff < TOLERANCE for diff in diffs[0].values()), diffs[0]


def _import_all(root: str, tp: int, pp: int) -> None:
    from mos_nemo.convert import import_hf

    for family in FAMILIES:
        import_hf(str(Path(root) / family), str(Path(root) / "ckpt" / family), tp, pp, "fp32")


def _export_all(root: str, tp: int, pp: int) -> None:
    from mos_nemo.convert import export_ckpt

    for family in FAMILIES:
        export_ckpt(str(Path(root) / "ckpt" / family), str(Path(root) / "export" / family), tp, pp, "fp32")


@pytest.mark.slow
@pytest.mark.distributed
def test_export_of_import_is_bit_identical_and_generates(hf_dirs):
    run_distributed(_import_all, 2, str(hf_dirs), 2, 1)  # written at TP=2 ...
    run_distributed(_export_all, 2, str(hf_dirs), 1, 2)  # ... read back at PP=2
    import transformers

    for family in FAMILIES:
        original, exported = hf_dirs / family, hf_dirs / "export" / family
        before, after = load_file(original / "model.safetensors"), load_hf_folder(exported)
        assert sorted(before) == sorted(after), family
        for name, tensor in before.items():
            assert after[name].dtype == tensor.dtype and after[name].shape == tensor.shape, name
            assert torch.equal(after[name].view(torch.int32), tensor.view(torch.int32)), name  # bits
        assert (exported / "tokenizer.json").read_bytes() == (original / "tokenizer.json").read_bytes()
        model = transformers.AutoModelForCausalLM.from_pretrained(exported)
        fields = [config.to_dict() for config in (model.config, transformers.AutoConfig.from_pretrained(original))]
        for config in fields:
            config.pop("_name_or_path")
        assert fields[0] == fields[1], family
        tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
        prompt = tokenizer("Question: what is 12 plus 30?", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        assert out.shape[1] == prompt["input_ids"].shape[1] + 6
        assert tokenizer.decode(out[0, -6:]) != ""


def load_hf_folder(folder: Path) -> dict:
    """Every tensor of a sharded HF folder, through its model.safetensors.index.json."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    files = {name: load_file(folder / name) for name in set(index.values())}
    return {name: files[file][name] for name, file in index.items()}


def _last_line(command: list[str], timeout_s: int = 240) -> str:
    # Own session, so that a hung run's ranks die with it instead of outliving the test.
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command} hung for {timeout_s} s:\n{stderr[-4000:]}")
    assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]
    return stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.distributed
def test_verify_cli_prints_the_difference_last(hf_dirs):
    spawned = _last_line([sys.executable, "-m", "mos_nemo.convert", "verify", "--hf", str(hf_dirs / "qwen2"),
                          "--tp", "2"])
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    launched = _last_line([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "mos_nemo.convert",
                           "verify", "--hf", str(hf_dirs / "gemma"), "--pp", "2"])
    for line in (spawned, launched):
        label, value = line.split()
        assert label == "max_abs_logit_diff" and float(value) < TOLERANCE
