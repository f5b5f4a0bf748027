"""The README's "Fine-tune on your own data" works as written: its recipe (copied out of README.md, with the
model and data paths pointed at real files) passes `--cfg job`, trains, plots and exports with the commands
the README gives."""

import re
import subprocess
import sys

import pytest
import yaml

from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from tests.distributed import ROOT


def _readme_recipe() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n# my_recipes/my_sft.yaml\n(.*?)```", text, re.S)
    assert block, "README lost its own-data recipe"
    return block.group(1)


def _run(*args: str, timeout: int = 600) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_the_readme_recipe_is_valid_as_written(tmp_path):
    recipe = _readme_recipe()
    assert yaml.safe_load(recipe)["defaults"] == ["mos_schema", "_self_"]
    (tmp_path / "my_recipes").mkdir()
    (tmp_path / "my_recipes" / "my_sft.yaml").write_text(recipe)
    printed = yaml.safe_load(_run("mos_nemo/train.py", "--config-dir", str(tmp_path / "my_recipes"),
                                  "--config-name", "my_sft", "--cfg", "job"))
    assert [d["name"] for d in printed["datasets"]] == ["math", "chat"]
    assert printed["mixing"]["strategy"] == "mos" and printed["train"]["epochs"] == 3


@pytest.mark.slow
def test_the_readme_journey_trains_plots_and_exports(tmp_path):
    model = tmp_path / "models" / "tiny"
    save_tiny_hf_model(model, "qwen2", seed=1)
    data = tmp_path / "data"
    data.mkdir()
    (data / "math.jsonl").write_text((ROOT / "recipes" / "fixtures" / "arith.jsonl").read_text())
    (data / "chat.jsonl").write_text((ROOT / "recipes" / "fixtures" / "chat.jsonl").read_text())
    recipe = _readme_recipe().replace("/models/Qwen1.5-0.5B", str(model)).replace("/data/", f"{data}/")
    (tmp_path / "my_recipes").mkdir()
    (tmp_path / "my_recipes" / "my_sft.yaml").write_text(recipe)
    run = tmp_path / "runs" / "my_sft"
    _run("mos_nemo/train.py", "--config-dir", str(tmp_path / "my_recipes"), "--config-name", "my_sft",
         f"run.dir={run}", "train.epochs=null", "train.max_steps=2", "train.global_batch_size=4",
         "train.seq_length=128", "mixing.update_every=1", "optim.lr=1e-3", "checkpoint.every=0")
    assert len((run / "mixture.jsonl").read_text().splitlines()) == 3  # step 0 and two MoS updates
    _run("-m", "mos_nemo.plot", str(run))
    assert (run / "mixture.png").stat().st_size > 0
    latest = (run / "checkpoints" / "latest").read_text().strip()  # as the README: $(cat .../latest)
    assert latest == "step_0000002"
    _run("-m", "mos_nemo.convert", "export", "--ckpt", str(run / "checkpoints" / latest),
         "--out", str(tmp_path / "my_model"))
    import transformers

    assert transformers.AutoConfig.from_pretrained(tmp_path / "my_model").model_type == "qwen2"
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "my_model").chat_template
