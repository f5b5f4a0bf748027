"""Offline data preparation for the paper's experiments (``python -m mos_nemo.data.prepare ...``).

- ``prepare paper --out DIR``: the four training sets of the paper's Appendix B (MathInstruct, MedInstruct,
  ShareGPT, P3 with 1K random examples per subset), normalised to one conversation format, then a random
  10% of each; JSONL files, a manifest and a Table-6-shaped statistics table (``paper.py``, ``stats.py``).
- ``prepare ifd --data DIR/full --model M --out DIR/ifd``: Instruction-Following Difficulty per example and
  the top-k% of each dataset by IFD (the paper's Table 3; ``ifd.py``).

Both stream their sources with a progress bar, keep finished work on disk (rerunning resumes) and are
deterministic for a seed. Hub access goes through ``hub.py``; ``--source-root`` (or ``$MOS_NEMO_HUB_ROOT``)
reads the same repositories from a local folder laid out as ``ROOT/owner/name/...``.
"""
