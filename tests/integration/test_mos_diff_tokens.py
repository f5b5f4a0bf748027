"""`mixing.diff_tokens`: the reward pass's per-example NLL on a real tiny megatron-core model (one gloo rank),
against HF transformers on the exported model: `sequence` equals HF's loss with labels = input_ids (what the
authors' code feeds its Diff PPL), `response` is the mean over response tokens only (paper Eq. 9)."""

import pytest
import torch

from tests.distributed import run_distributed

BASE = ["mixing.strategy=mos", "mixing.reward=diff", "mixing.reward_batch=4", "mixing.reference_pool=12",
        "checkpoint.every=0", "checkpoint.save_final=false", "train.max_steps=3", "mixing.update_every=100"]


def _nll_and_export(run_dir: str):
    from mos_nemo.config import compose_config
    from mos_nemo.data import reward_example_ids
    from mos_nemo.engine.hf.weights import export_hf
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
    from mos_nemo.engine.training.loop import Trainer
    from mos_nemo.engine.training.reward_pass import gather_examples

    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", *BASE, "mixing.diff_tokens=sequence"])
    trainer = Trainer(config, initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed))
    trainer.run()  # a few real steps, so the model is no longer its random init
    ids = [reward_example_ids(len(ds), 4, config.run.seed, 7, i) for i, ds in enumerate(trainer.datasets)]
    rows = gather_examples(trainer.datasets, ids)
    hook = trainer.reward_hook
    sequence = hook._score(trainer.model[0], rows, with_embeddings=False).nll
    hook.diff_tokens = "response"
    response = hook._score(trainer.model[0], rows, with_embeddings=False).nll
    export_hf(trainer.model[0].module, trainer.hf_config, f"{run_dir}/hf", tokenizer_dir=trainer.tokenizer_dir)
    examples = [[(e["input_ids"].tolist(), e["loss_mask"].tolist()) for e in dataset] for dataset in rows.examples]
    destroy_parallel()
    return sequence.tolist(), response.tolist(), examples


@pytest.mark.slow
def test_sequence_and_response_nll_match_hf_transformers(tmp_path):
    import transformers

    sequence, response, examples = run_distributed(_nll_and_export, 1, str(tmp_path))[0]
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    expected_sequence, expected_response = [], []
    with torch.no_grad():
        for dataset in examples:
            row_sequence, row_response = [], []
            for ids, mask in dataset:
                tokens = torch.tensor([ids])
                row_sequence.append(model(input_ids=tokens, labels=tokens).loss.item())  # authors' PPL input
                logits = model(input_ids=tokens).logits[0, :-1].double()  # [n-1, V]
                token_nll = torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="none")  # [n-1]
                targets = torch.tensor(mask[1:], dtype=torch.bool)  # labels are response tokens
                row_response.append(token_nll[targets].mean().item())
            expected_sequence.append(row_sequence)
            expected_response.append(row_response)
    torch.testing.assert_close(torch.tensor(sequence), torch.tensor(expected_sequence), rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(response), torch.tensor(expected_response), rtol=0, atol=1e-4)
    assert float((torch.tensor(sequence) - torch.tensor(response)).abs().max()) > 1e-2  # they really differ
