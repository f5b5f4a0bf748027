"""The paper's recipes: every one composes and validates (model and data folders stubbed by tmp fixtures
through the recipes' own environment variables), fits one node of 8 x 80 GB at its documented layout, and
differs from its Table 1 counterpart only where the paper says."""

import functools
import math
import re
import subprocess
import sys
from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from pathlib import Path

import pytest
import transformers

from mos_nemo.config import RECIPES_DIR, compose_config
from mos_nemo.config_checks import validate
from paper_recipes import (BACKBONES, GPU_MEMORY_GB, GPUS_PER_NODE, HEADLINE, HF_CONFIGS, PAPER_RECIPES,
                           PUBLISHED_PARAMS, TABLE1, TABLE1_METHODS, TABLE2, TABLE3, backbone_of)

ROOT = Path(__file__).resolve().parents[3]
DATA_FILES = [f"{sub}{name}.jsonl" for sub in ("", "ifd/") for name in ("math", "medicine", "general", "nlp")]


@pytest.fixture
def cluster_folders(tmp_path, monkeypatch):
    """Model folders holding the real config.json shapes and prepared-data files, where the recipes look."""
    for folder, hf_config in HF_CONFIGS.items():
        hf_config.save_pretrained(tmp_path / "models" / folder)
    for name in DATA_FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_text('{"messages": []}\n')
    monkeypatch.setenv("MOS_NEMO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("MOS_NEMO_PAPER_DATA", str(tmp_path / "data"))
    return tmp_path


def flat(config) -> dict:
    """``{"a.b": value}`` of a composed config; enums as their names, the dataset list as one value."""
    out = {}

    def walk(value, prefix):
        if is_dataclass(value) and not isinstance(value, type):
            for item in fields(value):
                walk(getattr(value, item.name), f"{prefix}{item.name}.")
        elif isinstance(value, list):
            out[prefix[:-1]] = [asdict(v) if is_dataclass(v) else v for v in value]
        else:
            out[prefix[:-1]] = value.name if isinstance(value, Enum) else value

    walk(config, "")
    return out


@functools.lru_cache(maxsize=None)
def composed(name: str) -> dict:
    """The flat composed recipe with the default folders (only for tests that do not set the folders)."""
    return flat(compose_config(name))


def differing(a: str, b: str) -> dict:
    left, right = composed(a), composed(b)
    assert left.keys() == right.keys()
    return {k: (left[k], right[k]) for k in left if left[k] != right[k]}


def test_every_paper_experiment_has_a_recipe():
    on_disk = {p.stem for p in RECIPES_DIR.glob("*.yaml") if "- paper/base" in p.read_text()}
    assert on_disk == set(PAPER_RECIPES)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_recipe_composes_and_validates_with_its_folders_present(name, cluster_folders):
    config = compose_config(name)
    validate(config, world_size=GPUS_PER_NODE)  # the real path checks, against the tmp folders
    assert config.model.hf_path.startswith(str(cluster_folders / "models"))
    assert all(d.source.startswith(str(cluster_folders / "data")) for d in config.datasets)
    assert config.run.dir == f"runs/{name}"  # docker/slurm/eval.sbatch finds run.dir/hf by this rule
    assert config.checkpoint.every > 0 and config.checkpoint.resume == "auto" and config.checkpoint.export_hf


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_appendix_c_hyper_parameters(name):
    c = composed(name)
    assert (c["optim.lr"], c["train.global_batch_size"], c["optim.warmup_fraction"]) == (1e-5, 64, 0.1)
    assert c["train.epochs"] == (12 if name == "llama3_8b_math_only" else 3)
    # reward_batch and scorer_lr stay null: the schema's per-reward / per-scorer defaults reproduce the
    # authors' code (64 CosSim / 16 Diff examples, psi lr 1e-4 for the logits scorer).
    assert (c["mixing.update_every"], c["mixing.reward_batch"], c["mixing.scorer_lr"]) == (100, None, None)
    assert c["mixing.scorer"] == "logits"
    if "_mos" in name:
        assert c["mixing.strategy"] == "mos"
        assert c["mixing.ema_beta"] == (0.9 if name.endswith("_ema") or "_ema_" in name or name == HEADLINE
                                        else 1.0)


def _parameters(hf: transformers.PretrainedConfig) -> int:
    h, heads, kv = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads
    d = getattr(hf, "head_dim", None) or h // heads
    bias = (heads + 2 * kv) * d if hf.model_type == "qwen2" else 0
    layer = h * heads * d * 2 + 2 * h * kv * d + 3 * h * hf.intermediate_size + 2 * h + bias
    embeddings = hf.vocab_size * h * (1 if hf.tie_word_embeddings else 2)
    return embeddings + hf.num_hidden_layers * layer + h


def _memory_gb(config, hf) -> float:
    """Per-GPU estimate documented in the backbone recipes (pp = 1)."""
    tp, pp = config.parallel.tp, config.parallel.pp
    dp = GPUS_PER_NODE // (tp * pp)
    shard = _parameters(hf) / (tp * pp)
    static = shard * (2 + 4) + shard * 12 / dp
    h, heads, kv = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads
    d = getattr(hf, "head_dim", None) or h // heads
    tokens = config.train.micro_batch_size * config.train.seq_length
    per_token = 4 * h + 2 * heads * d + 2 * kv * d + 3 * hf.intermediate_size
    activations = 2 * tokens * hf.num_hidden_layers / pp * per_token / tp
    logits = tokens * hf.vocab_size / tp * 10
    return (static + activations + logits) / 1e9


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_launch_arithmetic_on_one_node_of_8_gpus(name, cluster_folders):
    config = compose_config(name)
    hf = transformers.AutoConfig.from_pretrained(config.model.hf_path)  # the stub holds the real shapes
    tp, pp = config.parallel.tp, config.parallel.pp
    assert GPUS_PER_NODE % (tp * pp) == 0
    dp = GPUS_PER_NODE // (tp * pp)
    assert config.train.global_batch_size % (config.train.micro_batch_size * dp) == 0
    assert hf.num_hidden_layers % pp == 0
    assert hf.num_attention_heads % tp == 0 and hf.num_key_value_heads % tp == 0
    assert _memory_gb(config, hf) < 0.75 * GPU_MEMORY_GB


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_comment_states_the_arithmetic(backbone, cluster_folders):
    folder = BACKBONES[backbone]
    hf = HF_CONFIGS[folder]
    assert _parameters(hf) == pytest.approx(PUBLISHED_PARAMS[folder], rel=2e-3)
    text = (RECIPES_DIR / "backbone" / f"{backbone}.yaml").read_text()
    config = compose_config(f"{backbone}_temp")
    stated = float(re.search(r"total ~ ([0-9.]+) GB", text).group(1))
    assert stated == pytest.approx(_memory_gb(config, hf), abs=0.1)
    assert f"P = {_parameters(hf) / 1e9:.3f}B parameters" in text
    for word in ("weights", "gradients", "optimizer", "activations", f"micro batch {config.train.micro_batch_size}"):
        assert word in text


def test_mospec_differs_from_table1_only_in_the_target():
    for reward in ("cossim", "diff"):
        diff = differing(f"llama3_8b_mospec_{reward}_ema", f"llama3_8b_mos_{reward}_ema")
        assert set(diff) == {"run.dir", "mixing.target"} and diff["mixing.target"] == ("math", None)


def test_math_only_differs_from_temp_in_data_and_epochs_only():
    diff = differing("llama3_8b_math_only", "llama3_8b_temp")
    assert set(diff) == {"run.dir", "datasets", "train.epochs"}
    assert diff["train.epochs"] == (12, 3)
    only, four = diff["datasets"]
    assert [d["name"] for d in only] == ["math"] and only[0] == four[0]


def test_table2_changes_only_the_prior():
    for name in TABLE2:
        base, tau = name.rsplit("_tau", 1)
        diff = differing(name, base)
        assert set(diff) == {"run.dir", "mixing.tau"} and diff["mixing.tau"] == (float(tau), math.inf)


def test_table3_changes_only_the_data_files():
    for name in TABLE3:
        diff = differing(name, name.replace("_ifd", ""))
        assert set(diff) == {"run.dir", "datasets"}
        ifd, random = diff["datasets"]
        assert [d["source"] for d in ifd] == [d["source"].replace("/paper/", "/paper/ifd/") for d in random]


def test_table1_rows_differ_only_in_the_mixing_method():
    expected = {"prop": (1.0, "static"), "temp": (10.0, "static"), "uni": (math.inf, "static")}
    for backbone in BACKBONES:
        for method in TABLE1_METHODS[1:]:
            keys = set(differing(f"{backbone}_{method}", f"{backbone}_prop"))
            assert keys - {"run.dir"} <= {"mixing.tau", "mixing.strategy", "mixing.reward", "mixing.ema_beta"}
        for method, (tau, strategy) in expected.items():
            mixing = composed(f"{backbone}_{method}")
            assert (mixing["mixing.tau"], mixing["mixing.strategy"]) == (tau, strategy)
    for method in TABLE1_METHODS:  # the backbone changes only the model and its layout
        keys = set(differing(f"qwen1_5_0_5b_{method}", f"llama3_8b_{method}"))
        assert keys <= {"run.dir", "model.hf_path", "parallel.tp", "parallel.sequence_parallel",
                        "train.micro_batch_size"}
    assert set(differing(HEADLINE, "llama3_8b_mos_cossim_ema")) == {"run.dir"}
    assert len(TABLE1) == 21


def test_headline_fails_fast_naming_the_missing_model_then_the_missing_data(tmp_path):
    def launch(**env):
        return subprocess.run([sys.executable, "mos_nemo/train.py", "--config-name", HEADLINE],
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**_base_env(), "WORLD_SIZE": "8", **env})

    missing_model = launch(MOS_NEMO_MODELS=str(tmp_path / "models"))
    assert missing_model.returncode == 2 and "Traceback" not in missing_model.stderr
    assert f"model.hf_path='{tmp_path}/models/Meta-Llama-3-8B'" in missing_model.stderr
    HF_CONFIGS["Meta-Llama-3-8B"].save_pretrained(tmp_path / "models" / "Meta-Llama-3-8B")
    missing_data = launch(MOS_NEMO_MODELS=str(tmp_path / "models"), MOS_NEMO_PAPER_DATA=str(tmp_path / "data"))
    assert missing_data.returncode == 2
    assert f"dataset 'math': source '{tmp_path}/data/math.jsonl' (key datasets[0].source)" in missing_data.stderr
    assert "python -m mos_nemo.data.prepare paper" in missing_data.stderr


def _base_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MOS_NEMO_")}
