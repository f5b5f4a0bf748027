"""What a user sees on the console of a real run: the data path's per-dataset counts (logging reaches the
terminal), including examples dropped because truncation left them no response token."""

import json

import pytest

from tests.distributed import ROOT, launch_training

LONG_PROMPT = "Please read this carefully. " * 60  # about 300 tokens: past seq_length=128 with its answer


@pytest.mark.slow
def test_dropped_examples_are_reported_on_the_console(tmp_path):
    source = tmp_path / "long.jsonl"
    with open(source, "w") as handle:
        for i in range(24):  # every third prompt is too long: its response is cut away entirely
            prompt = (LONG_PROMPT if i % 3 == 0 else "") + f"Compute {i} + {i}."
            handle.write(json.dumps({"instruction": prompt, "output": f"{i} + {i} = {2 * i}"}) + "\n")
    datasets = (f"datasets=[{{name: arith, source: {ROOT}/recipes/fixtures/arith.jsonl, format: instruction}}, "
                f"{{name: long, source: {source}, format: instruction}}]")
    console = launch_training(tmp_path / "run", "train.max_steps=1", "checkpoint.save_final=false",
                              "checkpoint.every=0", f"data.cache_dir={tmp_path / 'cache'}", datasets)
    lines = [line for line in console.splitlines() if "dataset 'long'" in line]
    assert len(lines) == 1, console[-3000:]
    assert "16 examples" in lines[0] and "dropped 8 with no response token left after truncation" in lines[0]
    assert "dataset 'arith'" in console and "dropped 0 with no response token" in console
    # rank 0 also keeps the log in run.dir/log.txt
    assert "dropped 8 with no response token" in (tmp_path / "run" / "log.txt").read_text()
