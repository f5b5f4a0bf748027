"""Tiny offline stand-ins for the evaluation inputs: a byte-level BPE tokenizer with a chat template, a
random Llama saved as an HF folder, and MMLU/GSM8K/MATH-shaped datasets in the HF hub layout (one folder
per config, parquet shards, a README whose YAML header declares the configs, as `cais/mmlu` has)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_ALL = REPO / "eval" / "run_all.sh"

# ChatML, as Qwen1.5 has: a turn ends with <|im_end|>, which is NOT the tokenizer's eos (</s>).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What the scripted fixture model answers to every turn before it emits <|im_end|>, and what it writes
# after <|im_end|> (an invented continuation that must never reach the answers).
SCRIPTED_REPLY = ("Tom", " has")
SCRIPTED_AFTER_TURN = " apples"

# Per split, the rows of each fixture config. Counts differ on purpose, so that weighting by sample
# counts and plain averaging of accuracies give different numbers.
MMLU_ROWS = {
    "abstract_algebra": 3,  # Mathematics (paper Table 7)
    "high_school_statistics": 2,  # Mathematics
    "anatomy": 2,  # Medicine
    "astronomy": 4,  # Others
}
GSM8K_TEST_ROWS = 3
MATH_TEST_ROWS = {"algebra": 2, "geometry": 1}


def build_tokenizer(out_dir: Path, corpus: list[str], chat_template: str | None = CHAT_TEMPLATE):
    """A byte-level BPE tokenizer trained on `corpus`, saved as a transformers fast tokenizer; without
    `chat_template` it is a base model's tokenizer (training then uses the plain template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(out_dir)
    return fast


def _single_token(tok, text: str) -> int:
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) == 1, f"fixture corpus must make {text!r} one token, got {ids}"
    return ids[0]


def script_turn_end(model, tok) -> None:
    """Make greedy decoding deterministic and independent of the context: every layer's output projections
    are zeroed, so the last position's hidden state is its token's embedding, and the embeddings and
    lm_head rows of a few tokens are set so that the next token is a fixed function of the current one:
        end of generation prompt -> Tom -> " has" -> <|im_end|> -> " apples" -> " apples" -> ...
    So the reply to every turn is "Tom has" followed by the end-of-turn token <|im_end|>, which is not
    eos: a generator that stops only at eos writes " apples" until the token limit."""
    import torch

    prompt_end = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True)
    if not isinstance(prompt_end, list):
        prompt_end = prompt_end["input_ids"]
    chain = [prompt_end[-1], *(_single_token(tok, t) for t in SCRIPTED_REPLY),
             tok.convert_tokens_to_ids("<|im_end|>"), _single_token(tok, SCRIPTED_AFTER_TURN)]
    chain.append(chain[-1])  # " apples" -> " apples"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight  # [v, h], [v, h]
        for k, (current, following) in enumerate(zip(chain[:-1], chain[1:])):
            embed[current] = 0.0
            embed[current, k] = 1.0  # one direction of the hidden space per chain token
            head[following, k] = 10.0  # logit ~ 10 * sqrt(h) for the follower, ~0.1 for every other token


def build_tiny_llama(out_dir: Path, corpus: list[str], seed: int = 0, scripted: bool = True) -> Path:
    """A 2-layer random Llama with the fixture tokenizer (ChatML, <|im_end|> != eos), saved as an HF
    folder (safetensors); `scripted` makes its replies "Tom has<|im_end|> apples apples ..." (see
    script_turn_end). Nothing tells generation about <|im_end|>: the eos of config and generation config is
    the tokenizer's </s>, as in a base model's folder."""
    from mos_nemo.engine.hf.tiny import tiny_hf_config, tiny_hf_model

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, corpus)
    config = tiny_hf_config(
        "llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        max_position_embeddings=16384, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = tiny_hf_model(config, seed)
    if scripted:
        script_turn_end(model, tok)
    model.save_pretrained(out_dir)
    return out_dir


JUDGE_VERDICT = "[[7]]"


def build_scripted_judge(out_dir: Path, reply: str = JUDGE_VERDICT) -> Path:
    """A tiny Llama whose greedy reply to ANY prompt is `reply` (default JUDGE_VERDICT) then eos: a local
    MT-bench judge with a known verdict. As in script_turn_end, layer outputs are zeroed so the next token depends only on the
    current one; every token outside the verdict shares one embedding direction that points at the verdict's
    first token, and the verdict's tokens chain to eos."""
    import torch

    from mos_nemo.engine.hf.tiny import tiny_hf_config, tiny_hf_model

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, corpus_for_tokenizer() + [f"Rating: {JUDGE_VERDICT}"] * 50)
    chain = [*tok(reply, add_special_tokens=False).input_ids, tok.eos_token_id]
    assert len(set(chain)) == len(chain), "the reply's tokens must be distinct"
    config = tiny_hf_config(
        "llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        max_position_embeddings=16384, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = tiny_hf_model(config, seed=0)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        embed[:, 0] = 1.0  # direction 0: "any other token"
        head[chain[0], 0] = 10.0
        for k, (current, following) in enumerate(zip(chain[:-1], chain[1:]), start=1):
            embed[current] = 0.0
            embed[current, k] = 1.0
            head[following, k] = 10.0
    model.save_pretrained(out_dir)
    return out_dir


def _write_hf_dataset(root: Path, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """Write {config: {split: rows}} as parquet shards plus the README header the hub uses."""
    from datasets import Dataset

    header = ["---", "configs:"]
    for config, splits in configs.items():
        header += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            shard = root / config / f"{split}-00000-of-00001.parquet"
            shard.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_list(rows).to_parquet(str(shard))
            header += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    header += ["---", "", "Test fixture."]
    (root / "README.md").write_text("\n".join(header) + "\n")
    return root


def build_mmlu(root: Path) -> Path:
    def row(subject: str, i: int) -> dict:
        return {
            "question": f"Question {i} about {subject.replace('_', ' ')}: which letter is right?",
            "subject": subject,
            "choices": [f"option {c} {i}" for c in "wxyz"],
            "answer": (i * 3 + len(subject)) % 4,
        }

    configs = {
        subject: {"test": [row(subject, i) for i in range(n)], "dev": [row(subject, 100)]}
        for subject, n in MMLU_ROWS.items()
    }
    return _write_hf_dataset(root, configs)


def build_gsm8k(root: Path) -> Path:
    def row(i: int) -> dict:
        a, b = 3 + i, 4 + 2 * i
        return {
            "question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
            "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b}",
        }

    return _write_hf_dataset(
        root, {"main": {"train": [row(i) for i in range(5)], "test": [row(10 + i) for i in range(GSM8K_TEST_ROWS)]}}
    )


def build_math(root: Path) -> Path:
    def row(kind: str, i: int) -> dict:
        return {
            "problem": f"Compute ${i} + {i + 1}$ in {kind}.",
            "level": "Level 1",
            "type": kind.capitalize(),
            "solution": f"We add: ${i} + {i + 1} = \\boxed{{{2 * i + 1}}}$.",
        }

    configs = {
        kind: {"train": [row(kind, i) for i in range(5)], "test": [row(kind, 20 + i) for i in range(n)]}
        for kind, n in MATH_TEST_ROWS.items()
    }
    return _write_hf_dataset(root, configs)


def corpus_for_tokenizer() -> list[str]:
    """Text the fixture tokenizer is trained on: enough English and digits to give short token ids."""
    lines = [
        "The following are multiple choice questions (with answers) about algebra.",
        "Question: Tom has 3 apples and buys 4 more. How many apples does he have? Answer: 7",
        "Problem: Compute $1 + 2$. Answer: We add: $1 + 2 = \\boxed{3}$.",
        "Compose an engaging travel blog post about a recent trip to Hawaii.",
        "Write a persuasive email to convince your introverted friend to volunteer.",
        "Solve the equation for x and explain each step of the reasoning.",
        "Tom has apples. Tom has more apples.",
    ]
    return lines * 20 + [json.dumps({"k": i}) for i in range(50)]


def train_tiny_run(tokenizer_dir: Path, run_dir: Path) -> Path:
    """Train the tiny_cpu recipe for 4 steps (checkpoints at 2 and 4) with a base tokenizer that has no
    chat template, through torchrun as a user would; returns run.dir."""
    build_tokenizer(tokenizer_dir, corpus_for_tokenizer(), chat_template=None)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc-per-node", "1", str(REPO / "mos_nemo" / "train.py"),
               "--config-name", "tiny_cpu", f"run.dir={run_dir}", "train.max_steps=4", "checkpoint.every=2",
               f"model.tokenizer={tokenizer_dir}", f"data.cache_dir={run_dir.parent / 'cache'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_0000004"
    return run_dir


def run_all(ckpt: Path, out: Path, **env_overrides: str) -> subprocess.CompletedProcess:
    """eval/run_all.sh CKPT OUT with the test's environment (judge variables removed unless given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_BASE", "OPENAI_API_KEY")}
    env.update(PYTHON=sys.executable, **env_overrides)
    return subprocess.run(["bash", str(RUN_ALL), str(ckpt), str(out)], env=env, capture_output=True, text=True)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if "ERROR" in line]
