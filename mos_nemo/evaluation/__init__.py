"""Evaluation the way the paper reports it (Appendix D, Tables 1, 4, 5 and 7).

The drivers behind `eval/run_all.sh`: offline lm-eval task folders, MT-bench answer generation and
scoring, the aggregate tables, the side-by-side comparison and the perplexity table. Nothing here imports
megatron; any Hugging Face model folder can be evaluated.
"""
