"""Config composition and validation: every recipe validates, and every user error names its key."""

import subprocess
import sys
from pathlib import Path

import pytest

from mos_nemo.config import RECIPES_DIR, MosConfig, compose_config, non_default_settings
from mos_nemo.config_checks import validate
from mos_nemo.errors import MosConfigError

ROOT = Path(__file__).resolve().parents[3]
# The world size each recipe is written for (llama3_8b_mos: one node of 8 GPUs). The other paper recipes
# (defaults include paper/base) are checked in tests/unit/recipes.
WORLD = {"tiny_cpu": 1, "smollm2_demo": 2, "llama3_8b_mos": 8}


def test_every_recipe_is_listed_here():
    local = [p.stem for p in RECIPES_DIR.glob("*.yaml") if "- paper/base" not in p.read_text()]
    assert sorted(local + ["llama3_8b_mos"]) == sorted(WORLD)


@pytest.mark.parametrize("name", sorted(WORLD))
def test_every_recipe_composes_and_validates(name):
    config = compose_config(name)
    assert isinstance(config, MosConfig)
    # the 8B recipe names a model folder that only exists on the training cluster
    validate(config, world_size=WORLD[name], check_paths=name != "llama3_8b_mos")
    assert config.datasets and all(d.name for d in config.datasets)


def test_recipes_start_with_a_launch_command():
    for path in RECIPES_DIR.glob("*.yaml"):
        head = path.read_text().splitlines()[:12]
        assert any("mos_nemo/train.py --config-name " + path.stem in line for line in head), path.name


def test_llama3_recipe_is_the_papers_setup():
    config = compose_config("llama3_8b_mos")
    assert (config.train.global_batch_size, config.optim.lr, config.train.epochs) == (64, 1e-5, 3)
    assert (config.mixing.strategy, config.mixing.reward, config.optim.warmup_fraction) == ("mos", "cossim", 0.1)
    names = ("math", "medicine", "general", "nlp")
    assert [d.source.rsplit("/", 1)[-1] for d in config.datasets] == [f"{n}.jsonl" for n in names]


def _error(overrides, world_size=1, name="tiny_cpu", config_dir=None) -> str:
    with pytest.raises(MosConfigError) as caught:
        validate(compose_config(name, overrides, config_dir), world_size=world_size)
    return str(caught.value)


@pytest.mark.parametrize("overrides, key", [
    (["train.max_stepz=3"], "key 'train.max_stepz'"),
    (["optimm.lr=1"], "key 'optimm"),
    (["train.max_steps=many"], "key 'train.max_steps'"),
    (["mixing.tau=hot"], "key 'mixing.tau'"),
    (["datasets=[{name: a, sorce: a.jsonl}]"], "key 'sorce'"),
    (["train.max_steps"], "write overrides as key=value"),
])
def test_unknown_or_mistyped_keys_name_the_key(overrides, key):
    assert key in _error(overrides)


def test_unknown_key_in_a_recipe_file_names_the_key(tmp_path):
    text = (RECIPES_DIR / "tiny_cpu.yaml").read_text().replace("  seq_length: 128", "  seq_lenght: 128")
    (tmp_path / "typo.yaml").write_text(text)
    assert "key 'train.seq_lenght'" in _error([], name="typo", config_dir=tmp_path)


def test_missing_recipe_lists_the_known_ones():
    message = _error([], name="no_such_recipe")
    assert "no_such_recipe" in message and "tiny_cpu" in message


@pytest.mark.parametrize("overrides, world_size, key", [
    (["parallel.tp=2", "parallel.pp=2"], 2, "parallel.tp"),
    (["parallel.tp=3"], 2, "parallel.tp"),
    (["parallel.pp=0"], 1, "parallel.pp"),
    (["train.global_batch_size=6", "train.micro_batch_size=2"], 2, "train.global_batch_size"),
    (["train.micro_batch_size=0"], 1, "train.micro_batch_size"),
])
def test_impossible_parallel_sizes(overrides, world_size, key):
    assert key in _error(overrides, world_size)


@pytest.mark.parametrize("overrides, key", [
    (["model.config=null", "model.hf_path=/no/such/model"], "model.hf_path"),
    (["model.hf_path=/tmp"], "model.hf_path"),  # both a path and a tiny config
    (["model.config=null"], "model.hf_path"),  # neither
    (["model.tokenizer=asset:llama9"], "model.tokenizer"),
    (["model.config.family=gpt5"], "model.config.family"),
    (["model.dtype=fp8"], "model.dtype"),
])
def test_model_errors(overrides, key):
    assert key in _error(overrides)


def test_model_folder_without_config_json(tmp_path):
    assert "config.json" in _error(["model.config=null", f"model.hf_path={tmp_path}"])


def test_empty_dataset_list():
    assert "datasets" in _error(["datasets=[]"])


@pytest.mark.parametrize("overrides, key", [
    (["datasets=[{name: a, source: a.jsonl}, {name: a, source: b.jsonl}]"], "datasets[1].name"),
    (["datasets=[{name: a, source: ''}]"], "datasets[0]"),
    (["mixing.strategy=greedy"], "mixing.strategy"),
    (["mixing.mode=token"], "mixing.mode"),
    (["mixing.reward=bleu"], "mixing.reward"),
    (["mixing.reference=cloud"], "mixing.reference"),
    (["mixing.tau=0"], "mixing.tau"),
    (["mixing.ema_beta=1.5"], "mixing.ema_beta"),
    (["mixing.update_every=0"], "mixing.update_every"),
    (["mixing.target=medicine"], "mixing.target"),
    (["mixing.p_min=0.5"], "mixing.p_min"),
    (["mixing.strategy=odm", "mixing.target=chat"], "mixing.target"),  # MoSpec's key, ignored by odm
    (["mixing.strategy=doremi", "mixing.reference_model=/no/such/model"], "mixing.reference_model"),
    (["mixing.odm_alpha=1.0"], "mixing.odm_alpha"),
    (["mixing.reward_budget=0"], "mixing.reward_budget"),
    (["train.max_steps=null"], "train.max_steps"),
    (["train.epochs=2"], "train.max_steps"),  # both set
    (["optim.lr=0"], "optim.lr"),
    (["optim.warmup_fraction=1.0"], "optim.warmup_fraction"),
    (["checkpoint.every=-1"], "checkpoint.every"),
    (["checkpoint.resume=/no/such/checkpoint"], "checkpoint.resume"),
])
def test_semantic_errors_name_the_key(overrides, key):
    assert key in _error(overrides)


@pytest.mark.parametrize("overrides, why", [
    (["mixing.strategy=odm", "mixing.reward_budget=64"], "scores nothing"),
    (["mixing.strategy=mos", "mixing.reward_budget=32"], "L = 64"),  # CosSim's default L
    (["mixing.strategy=mos", "mixing.reward=diff", "mixing.reward_budget=8"], "L = 16"),
    (["mixing.strategy=doremi", "mixing.reward_batch=8", "mixing.reward_budget=4"], "L = 8"),
])
def test_a_reward_budget_the_mixer_cannot_use_is_refused_before_any_work(overrides, why):
    message = _error(overrides)
    assert message.startswith("mixing.reward_budget") and why in message


def test_a_reward_budget_for_a_scoring_mixer_is_accepted():
    for overrides in (["mixing.strategy=mos", "mixing.reward_budget=64"],
                      ["mixing.strategy=doremi", "mixing.reward_budget=16"],
                      ["mixing.strategy=static", "mixing.reward_budget=1"]):  # static ignores it, as it does target
        validate(compose_config("tiny_cpu", overrides), world_size=1)


def test_valid_overrides_are_typed():
    config = compose_config("tiny_cpu", ["mixing.tau=inf", "train.max_steps=7", "mixing.target=chat"])
    validate(config, world_size=1)
    assert config.mixing.tau == float("inf") and config.train.max_steps == 7


def test_non_default_settings_lists_only_changes():
    changed = non_default_settings(compose_config("tiny_cpu", ["optim.adam_eps=1e-6"]))
    assert changed["optim.adam_eps"] == 1e-6 and changed["train.max_steps"] == 20
    assert "optim.adam_beta1" not in changed and "mixing.ema_beta" not in changed


@pytest.mark.slow  # starts a fresh interpreter
def test_the_entry_point_reports_config_errors_before_any_work():
    done = subprocess.run([sys.executable, "mos_nemo/train.py", "--config-name", "tiny_cpu", "train.max_stepz=3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "train.max_stepz" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("allowed, key", [("datasets", "datasets"), ("model.config.hidden_size", "model.config"),
                                          ("model", "model.config"), ("mixing.scorer", "mixing.scorer")])
def test_allow_changes_refuses_keys_no_resume_can_follow_saying_why(allowed, key):
    config = compose_config("tiny_cpu", [f"checkpoint.allow_changes=[{allowed}]"])
    with pytest.raises(MosConfigError, match=rf"checkpoint.allow_changes=.*{allowed} can never change on a resume "
                                             rf"\({key}: the checkpoint"):
        validate(config, world_size=1, check_paths=False)


def test_a_changed_dataset_list_is_refused_without_offering_allow_changes(tmp_path):
    from mos_nemo.engine.training.resume_config import changed_settings, check_resume_changes, config_tree
    from omegaconf import OmegaConf

    saved = compose_config("tiny_cpu", [])
    changed = compose_config("tiny_cpu", ["datasets=[{name: a, source: a.jsonl}]"])
    changes = changed_settings(OmegaConf.to_yaml(config_tree(saved)), changed)
    with pytest.raises(MosConfigError) as refused:
        check_resume_changes(changes, ["datasets"], tmp_path)
    assert "no checkpoint can follow" in str(refused.value) and "belongs to its dataset list" in str(refused.value)
    assert "allow_changes" not in str(refused.value)
