"""`prepare ifd` with a tiny random HF model: IFD = PPL(y|x) / PPL(y) against a direct, unbatched oracle."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from mos_nemo.data.prepare.ifd import prepare_ifd
from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from mos_nemo.errors import MosDataError

ROOT = Path(__file__).resolve().parents[3]
WORDS = "the quick brown fox jumps over lazy dog patient drug answer question plus".split()


def _conversation(i: int) -> list[dict]:
    question = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(3 + i % 6))
    answer = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(2 + i % 5))
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if i % 4 == 3:  # a two-exchange chat: only the final assistant turn is y
        turns = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}] + turns
    return turns


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ifd")
    save_tiny_hf_model(root / "model", "qwen2", seed=3)
    data = root / "full"
    data.mkdir()
    for name, count in (("math", 13), ("general", 7)):
        lines = [json.dumps({"messages": _conversation(i + 100 * len(name))}) for i in range(count)]
        (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _oracle_ifd(model, tokenizer, conversation) -> float:
    """One unpadded forward pass per sequence; the NLL of each response token read off the logits."""
    prompt = "".join(f"{m['role']}: {m['content']}\n" for m in conversation[:-1]) + "assistant: "
    x = tokenizer(prompt)["input_ids"]
    y = tokenizer(conversation[-1]["content"], add_special_tokens=False)["input_ids"]

    def mean_nll(ids, first):  # mean over positions first..len-1 of -log p(ids[t] | ids[:t])
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        return -sum(torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(first, len(ids))) / (
            len(ids) - first)

    return math.exp(mean_nll(x + y, len(x))) / math.exp(mean_nll([tokenizer.bos_token_id] + y, 1))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ifd_equals_the_oracle_and_the_top_fraction_is_selected(setup, tmp_path):
    model = transformers.AutoModelForCausalLM.from_pretrained(setup / "model", dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(setup / "model")
    manifest = prepare_ifd(setup / "full", setup / "model", tmp_path, top=0.3, batch_size=4, keep_above_one=True,
                           progress=False)
    for name, count in (("math", 13), ("general", 7)):
        conversations = [r["messages"] for r in _lines(setup / "full" / f"{name}.jsonl")]
        scores = _lines(tmp_path / "scores" / f"{name}.jsonl")
        oracle = [_oracle_ifd(model, tokenizer, c) for c in conversations]
        assert [s["index"] for s in scores] == list(range(count))
        assert [s["ifd"] for s in scores] == pytest.approx(oracle, rel=1e-4)
        wanted = math.floor(count * 0.3 + 0.5)  # 4 of 13, 2 of 7
        best = sorted(range(count), key=lambda i: -oracle[i])[:wanted]
        assert _lines(tmp_path / f"{name}.jsonl") == [{"messages": conversations[i]} for i in sorted(best)]
        assert manifest["datasets"][name]["selected"] == wanted
    assert len({round(s["ifd"], 6) for s in _lines(tmp_path / "scores" / "math.jsonl")}) > 5  # not all equal


def test_ifd_of_one_or_more_is_left_out_by_default(setup, tmp_path):
    prepare_ifd(setup / "full", setup / "model", tmp_path, top=1.0, batch_size=8, progress=False, names=["math"])
    scores = _lines(tmp_path / "scores" / "math.jsonl")
    below = [s["index"] for s in scores if s["ifd"] < 1]
    assert 0 < len(below) < len(scores)  # the random model gives both kinds
    full = _lines(setup / "full" / "math.jsonl")
    assert _lines(tmp_path / "math.jsonl") == [full[i] for i in below]


def test_an_interrupted_run_resumes_after_the_last_complete_line(setup, tmp_path):
    prepare_ifd(setup / "full", setup / "model", tmp_path / "a", top=0.2, batch_size=4, progress=False)
    first = (tmp_path / "a" / "scores" / "math.jsonl").read_text().splitlines()
    resumed = tmp_path / "b" / "scores"
    resumed.mkdir(parents=True)
    (resumed / "math.jsonl").write_text("\n".join(first[:6]) + "\n" + first[6][:15])  # torn 7th line
    prepare_ifd(setup / "full", setup / "model", tmp_path / "b", top=0.2, batch_size=4, progress=False)
    again = _lines(resumed / "math.jsonl")
    assert [r["index"] for r in again] == list(range(13))
    assert [r["ifd"] for r in again] == pytest.approx([json.loads(x)["ifd"] for x in first], rel=1e-5)
    assert (tmp_path / "b" / "math.jsonl").read_text() == (tmp_path / "a" / "math.jsonl").read_text()


@pytest.mark.slow
def test_the_command_line_reports_and_names_a_missing_model(setup, tmp_path):
    done = subprocess.run([sys.executable, "-m", "mos_nemo.data.prepare", "ifd", "--data", str(setup / "full"),
                           "--model", str(setup / "model"), "--out", str(tmp_path), "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "math: " in done.stdout and " of 13 selected" in done.stdout
    with pytest.raises(MosDataError, match="no config.json"):
        prepare_ifd(setup / "full", tmp_path / "no_model", tmp_path, progress=False)
