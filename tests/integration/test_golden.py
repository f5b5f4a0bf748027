"""The golden step-1 loss of tiny_cpu recomputed with Hugging Face transformers: the same random tiny model
(the HF folder the trainer loads), the same first global batch, the paper's loss (Eq. 1: summed response-token
cross-entropy over the batch, divided by the batch's response-token count). No megatron, no collate."""

import torch

from mos_nemo.config import compose_config
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training import build
from tests.integration.golden import STEPS, TOLERANCE, load_golden


def _hf_step1_loss() -> float:
    import transformers

    config = compose_config("tiny_cpu", [f"train.max_steps={STEPS}"])
    one_process = ParallelState(rank=0, world_size=1, tp=1, pp=1, dp=1, tp_rank=0, pp_rank=0, dp_rank=0,
                                is_first_stage=True, is_last_stage=True, device=torch.device("cpu"))
    tokenizer, _ = build.load_tokenizer(config, one_process)
    datasets = build.load_datasets(config, tokenizer, one_process)
    _, folder = build.build_hf_config(config, tokenizer, one_process)
    dataset_ids, example_ids = build.build_blend(config, datasets, one_process).draw().local()
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    loss_sum, tokens = 0.0, 0
    with torch.no_grad():
        for dataset, example in zip(dataset_ids.tolist(), example_ids.tolist()):
            item = datasets[dataset][example]
            ids, response = item["input_ids"].long(), item["loss_mask"].bool()  # [n], [n]
            logits = model(input_ids=ids[None]).logits[0].double()  # [n, V]
            nll = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")  # [n - 1]
            loss_sum += float(nll[response[1:]].sum())  # token t predicts t + 1: a response token
            tokens += int(response[1:].sum())
    return loss_sum / tokens


def test_golden_step1_loss_matches_transformers():
    golden = load_golden()["losses"]
    assert golden["train.max_steps"] == STEPS
    assert abs(_hf_step1_loss() - golden["first"][0]) < TOLERANCE
