"""What eval/run_all.sh evaluates: an HF folder, made from whatever training or conversion produced.

Accepted, in this order of recognition:
- an HF model folder (has config.json): evaluated as it is;
- a training run folder (run.dir: config.yaml and checkpoints/): its latest complete checkpoint, or its
  `hf/` export when that is at least as new as the latest checkpoint;
- a training checkpoint (run.dir/checkpoints/step_N, with meta.json): exported with the HF config and
  tokenizer it carries (hf_config.json, tokenizer/), or for checkpoints written before they carried them,
  those of the run's config.yaml (model.hf_path or model.config, model.tokenizer);
- a converted checkpoint (`python -m mos_nemo.convert import`: model/ and hf_config.json): exported.

Exports go to OUT/hf_model with `python -m mos_nemo.convert export` (which writes the chat template used in
training into the tokenizer) and record their source in OUT/hf_model/mos_export_source.json, so that an
OUT folder never mixes results of two checkpoints.

Usage: python -m mos_nemo.evaluation.model_source PATH OUT   (prints the HF folder, as its last line)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from mos_nemo.errors import MosCheckpointError, MosError

SOURCE_STAMP = "mos_export_source.json"


def _is_training_checkpoint(path: Path) -> bool:
    return (path / "meta.json").is_file() and (path / "metadata.json").is_file()


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "checkpoints").is_dir()


def checkpoint_of_run(run_dir: Path) -> Path:
    """The training checkpoint to evaluate for a run folder: the one its `latest` file names."""
    from mos_nemo.engine.training.checkpoint import find_latest

    latest = find_latest(run_dir)
    if latest is None:
        raise MosCheckpointError(
            f"{run_dir}: a training run folder without a complete checkpoint in checkpoints/ (and no hf/ "
            "export); train until checkpoint.every steps have passed, or pass an HF folder"
        )
    return latest


def run_hf_source(run_dir: Path, staging: Path) -> Path:
    """An HF folder holding config.json and the tokenizer the run in `run_dir` was trained with."""
    from mos_nemo.config import compose_config
    from mos_nemo.engine.hf.weights import copy_tokenizer_files
    from mos_nemo.engine.training.build import build_hf_config, load_tokenizer

    config = compose_config("config", config_dir=run_dir)
    single_process = SimpleNamespace(rank=0, world_size=1)  # what build's rank_zero_first reads
    tokenizer, tokenizer_dir = load_tokenizer(config, single_process)
    hf_config, _ = build_hf_config(config, tokenizer, single_process)
    staging.mkdir(parents=True, exist_ok=True)
    hf_config.to_json_file(str(staging / "config.json"))
    copy_tokenizer_files(tokenizer_dir, staging)
    return staging


def _export(ckpt: Path, out: Path, hf_source=None) -> Path:
    """Export `ckpt` to OUT/hf_model once; `hf_source()` gives the folder for `convert export --hf`."""
    model = out / "hf_model"
    stamp = model / SOURCE_STAMP
    if (model / "config.json").is_file() and stamp.is_file():
        recorded = json.loads(stamp.read_text())["source"]
        if recorded == str(ckpt):
            return model
        raise MosCheckpointError(
            f"{out} holds an evaluation of {recorded}, not of {ckpt}: use another output folder for this "
            "checkpoint (results of two checkpoints must not mix)"
        )
    command = [sys.executable, "-m", "mos_nemo.convert", "export", "--ckpt", str(ckpt), "--out", str(model)]
    if hf_source is not None:
        command += ["--hf", str(hf_source())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "ERROR" in line]
        raise MosCheckpointError(
            f"export of {ckpt} with mos_nemo.convert failed: {(errors or done.stderr.splitlines() or ['?'])[-1]}"
        )
    stamp.write_text(json.dumps({"source": str(ckpt)}) + "\n")
    return model


def resolve(path: Path, out: Path) -> Path:
    """The HF folder to evaluate for `path` (see the module docstring), exporting into `out` if needed."""
    path = Path(path).resolve()
    if (path / "config.json").is_file():
        return path
    if _is_run_dir(path):
        latest = checkpoint_of_run(path) if list((path / "checkpoints").glob("step_*")) else None
        hf = path / "hf"
        if (hf / "config.json").is_file() and (
            latest is None or (hf / "config.json").stat().st_mtime >= (latest / "meta.json").stat().st_mtime
        ):
            return hf
        path = latest if latest is not None else checkpoint_of_run(path)
    if _is_training_checkpoint(path) and (path / "hf_config.json").is_file():
        return _export(path, out, None)  # it carries its config and tokenizer (convert export reads them)
    if _is_training_checkpoint(path):  # written before checkpoints carried them: the run's config.yaml says
        run_dir = path.parent.parent
        if not (run_dir / "config.yaml").is_file():
            raise MosCheckpointError(
                f"{path}: a training checkpoint outside its run folder ({run_dir}/config.yaml is missing), so "
                f"the model and tokenizer it was trained from are unknown; export it yourself with "
                f"`python -m mos_nemo.convert export --ckpt {path} --hf HF_DIR --out DIR`"
            )
        return _export(path, out, lambda: run_hf_source(run_dir, out / "hf_source"))
    if (path / "hf_config.json").is_file() and (path / "model").is_dir():
        return _export(path, out, None)
    raise MosCheckpointError(
        f"{path}: not an HF folder (no config.json), a training run folder (config.yaml + checkpoints/), a "
        "training checkpoint (run.dir/checkpoints/step_N) or a converted checkpoint (model/ + hf_config.json)"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(resolve(Path(argv[0]), Path(argv[1])))
    except MosError as err:
        print(f"model_source: ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
