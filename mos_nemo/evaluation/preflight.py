"""Checks that run before any benchmark, so a run fails in seconds with one clear line, not after hours.

- `model DIR`: DIR is an HF model folder whose config, tokenizer and weights load: every parameter the
  architecture expects is in the weight files with the right shape (read from safetensors headers, with
  the model built on the meta device, so no weights are materialised). With `--chat` (MT-bench, chat
  prompts) its tokenizer must have a chat template whose end of turn can be found (chat_stops.py).
- `judge`: OPENAI_API_BASE and OPENAI_API_KEY are set and the judge answers one real chat request for
  JUDGE_MODEL (a wrong name or an outage fails here, not after FastChat's 16 retries per grading).
- `server URL`: an OpenAI-compatible server (generation backend) answers.

Usage: python -m mos_nemo.evaluation.preflight model DIR [--chat] | judge [JUDGE_MODEL] | server URL
Exit status 0 when the check passes; otherwise one line `preflight: ERROR: ...` and status 2.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from mos_nemo.errors import MosCheckpointError, MosConfigError, MosError
from mos_nemo.evaluation.chat_stops import turn_stops


def _weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} over all safetensors shards (headers only) or torch .bin files."""
    shapes: dict[str, tuple[int, ...]] = {}
    safetensors_files = sorted(model_dir.glob("*.safetensors"))
    if safetensors_files:
        from safetensors import safe_open

        for path in safetensors_files:
            try:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():
                        shapes[key] = tuple(f.get_slice(key).get_shape())
            except Exception as err:  # safetensors raises its own error types for corrupt headers
                raise MosCheckpointError(f"{path}: unreadable safetensors file ({err})") from err
        return shapes
    import torch

    for path in sorted(model_dir.glob("pytorch_model*.bin")):
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as err:  # torch.load raises many types for a damaged pickle
            raise MosCheckpointError(f"{path}: unreadable weights file ({err})") from err
        shapes.update({k: tuple(v.shape) for k, v in state.items()})
    if not shapes:
        raise MosCheckpointError(f"{model_dir}: no *.safetensors or pytorch_model*.bin weight files")
    return shapes


def check_model(model_dir: Path, chat: bool = False) -> str:
    """Raise MosCheckpointError unless `model_dir` is an HF causal-LM folder that loads (and, with `chat`,
    has a usable chat template); returns its type."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise MosCheckpointError(f"{model_dir}: no config.json, so not an HF model folder")
    try:
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError) as err:
        raise MosCheckpointError(f"{model_dir}: config or tokenizer does not load ({err})") from err
    if chat and not getattr(tokenizer, "chat_template", None):
        raise MosCheckpointError(
            f"{model_dir}: no chat template, which MT-bench needs (MTBENCH=0 skips it); evaluate the training "
            "checkpoint (its export writes the template used in training) or add chat_template to "
            "tokenizer_config.json"
        )
    if chat:
        turn_stops(tokenizer)  # raises if the end of an assistant turn cannot be found
    shapes = _weight_shapes(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(set(expected) - set(shapes))
    wrong = sorted(k for k in expected if k in shapes and shapes[k] != expected[k])
    if missing or wrong:
        detail = [f"missing {missing[:3]}" if missing else "", f"wrong shape {wrong[:3]}" if wrong else ""]
        raise MosCheckpointError(
            f"{model_dir}: weights do not match its config.json ({'; '.join(d for d in detail if d)}); "
            "re-export the checkpoint"
        )
    return config.model_type


def check_server(base_url: str, api_key: str = "EMPTY", what: str = "server") -> None:
    """Raise unless `base_url` (an OpenAI-compatible /v1 root) answers GET /models."""
    request = urllib.request.Request(base_url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        if err.code >= 500 or err.code in (401, 403):
            raise MosConfigError(f"{what} {base_url} answered HTTP {err.code} to GET /models") from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise MosConfigError(f"{what} {base_url} is unreachable ({err}); start it or fix the URL") from err


def check_judge(judge_model: str = "gpt-4") -> str:
    """The MT-bench judge: FastChat's openai<1 client reads OPENAI_API_BASE and OPENAI_API_KEY. One real
    chat request for `judge_model`; returns the judge's reply."""
    base, key = os.environ.get("OPENAI_API_BASE"), os.environ.get("OPENAI_API_KEY")
    if not base or not key:
        raise MosConfigError(
            "no MT-bench judge: set OPENAI_API_BASE (an OpenAI-compatible /v1 URL serving the judge under a "
            "FastChat judge name such as gpt-4) and OPENAI_API_KEY, or run with MTBENCH=0 to skip MT-bench"
        )
    what = "judge server (OPENAI_API_BASE)"
    check_server(base, key, what=what)
    body = {"model": judge_model, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": "Reply with the word ready."}]}  # fmt: skip
    request = urllib.request.Request(
        base.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            reply = json.loads(response.read())["choices"][0]["message"]["content"]
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:200]
        raise MosConfigError(
            f"{what} {base} refused a chat request for JUDGE_MODEL={judge_model} (HTTP {err.code}: {detail}); "
            "serve the judge under that name or set JUDGE_MODEL to the name it is served under"
        ) from err
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise MosConfigError(f"{what} {base} gave no chat reply for JUDGE_MODEL={judge_model} ({err!r})") from err
    if not isinstance(reply, str) or not reply.strip():
        raise MosConfigError(f"{what} {base} answered an empty reply for JUDGE_MODEL={judge_model}")
    return reply


def main(argv: list[str]) -> int:
    try:
        if len(argv) in (2, 3) and argv[0] == "model" and argv[2:] in ([], ["--chat"]):
            print(f"preflight: model {argv[1]} loads ({check_model(Path(argv[1]), chat=argv[2:] == ['--chat'])})")
        elif argv[:1] == ["judge"] and len(argv) <= 2:
            reply = check_judge(*argv[1:])
            print(f"preflight: judge {os.environ['OPENAI_API_BASE']} answers: {reply.strip()[:80]!r}")
        elif len(argv) == 2 and argv[0] == "server":
            check_server(argv[1])
            print(f"preflight: server {argv[1]} answers")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except MosError as err:
        print(f"preflight: ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
