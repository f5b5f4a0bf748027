"""The lm-eval call for one benchmark, from eval/run_all.sh's settings (environment variables).

One call per benchmark, as `--num_fewshot` applies to a whole call: MMLU 0-shot, GSM8K and MATH 5-shot
(paper Appendix D), any other lm-eval task or group 0-shot unless NUM_FEWSHOT says otherwise
("bbh=3 arc_challenge=25"). Backends: `hf` (transformers), `vllm` (lm-eval's vLLM model; batch size
`auto` by default, as vLLM schedules its own batches), `local-completions` (an OpenAI-compatible
completions server). Besides the argument list, the settings a reuse must match are written to
BENCH_DIR/expected_settings.json (compared by run_steps lm-results-match with lm-eval's own record).

Usage: python -m mos_nemo.evaluation.lm_eval_command BENCH MODEL_DIR BENCH_DIR
       (writes BENCH_DIR/lm_eval_args.txt, one argument a line, and BENCH_DIR/expected_settings.json)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mos_nemo.errors import MosConfigError, MosError

PAPER_SHOTS = {"mmlu": 0, "gsm8k": 5, "hendrycks_math": 5}
BACKENDS = ("hf", "vllm", "local-completions")


def num_fewshot(bench: str, overrides: str = "") -> int:
    """The paper's shots for its benchmarks, NUM_FEWSHOT's for a task named there, else 0."""
    table = dict(PAPER_SHOTS)
    for item in overrides.split():
        name, sep, shots = item.partition("=")
        if not sep or not shots.isdigit():
            raise MosConfigError(f"NUM_FEWSHOT={overrides!r}: {item!r} is not TASK=N (e.g. 'bbh=3')")
        table[name] = int(shots)
    return table.get(bench, 0)


def model_flags(env: dict, model_dir: str) -> tuple[str, str, list[str]]:
    """(lm-eval --model, --model_args string, further flags) for EVAL_BACKEND."""
    backend, dtype, seed = env.get("EVAL_BACKEND", "hf"), env["EVAL_DTYPE"], env.get("EVAL_SEED", "1234")
    if backend == "hf":
        return "hf", f"pretrained={model_dir},dtype={dtype}", ["--device", env.get("EVAL_DEVICE", "cpu")]
    if backend == "vllm":
        return "vllm", f"pretrained={model_dir},dtype={dtype},seed={seed}", []
    if backend == "local-completions":
        base = env.get("EVAL_BASE_URL", "")
        if not base:
            raise MosConfigError("EVAL_BACKEND=local-completions needs EVAL_BASE_URL (the server's /v1 root)")
        served = env.get("EVAL_SERVED_MODEL") or model_dir
        args = f"model={served},base_url={base.rstrip('/')}/completions,tokenizer={model_dir},tokenized_requests=False"
        return "local-completions", args, []
    raise MosConfigError(f"EVAL_BACKEND={backend}: use one of {', '.join(BACKENDS)}")


def batch_size(env: dict) -> str:
    """EVAL_BATCH_SIZE, by default `auto` for vLLM (it batches by itself) and 8 otherwise."""
    return env.get("EVAL_BATCH_SIZE") or ("auto" if env.get("EVAL_BACKEND") == "vllm" else "8")


def command(env: dict, bench: str, model_dir: str, bench_dir: Path) -> tuple[list[str], dict]:
    """(lm_eval arguments after `python -m lm_eval`, the settings a reuse must match)."""
    model, model_args, flags = model_flags(env, model_dir)
    shots = num_fewshot(bench, env.get("NUM_FEWSHOT", ""))
    args = ["--model", model, "--model_args", model_args, *flags, "--tasks", bench, "--num_fewshot", str(shots),
            "--batch_size", batch_size(env), "--seed", env.get("EVAL_SEED", "1234"),
            "--output_path", str(bench_dir), "--log_samples"]  # fmt: skip
    limit = env.get("EVAL_LIMIT") or None
    if limit:
        args += ["--limit", limit]
    expected = {"model": model, "model_args": model_args, "limit": limit, "num_fewshot": shots}
    return args, expected


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    bench, model_dir, bench_dir = argv[0], argv[1], Path(argv[2])
    try:
        args, expected = command(dict(os.environ), bench, model_dir, bench_dir)
    except MosError as err:
        print(f"lm_eval_command: ERROR: {err}", file=sys.stderr)
        return 2
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "expected_settings.json").write_text(json.dumps(expected) + "\n")
    (bench_dir / "lm_eval_args.txt").write_text("\n".join(args) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
