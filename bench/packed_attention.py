"""Memory of packed attention without Transformer Engine: one packed row, forward and backward of the core
attention, the dense block-diagonal mask (the local spec's path before) against per-example attention (now).

    .venv/bin/python bench/packed_attention.py                 # Llama-3-8B heads: 32 query, 8 key/value, 2048 tokens

Three measurements, same q/k/v and row (example lengths drawn from the paper's Table 6 mix):
- mask, CPU's kernel choice: SDPA with the [1, 1, s, s] mask (CPU's flash kernel takes masks and GQA);
- mask, math kernel: the same call under the math kernel, which is what CUDA runs it on (its flash kernel takes
  no mask, its memory-efficient one no GQA), so this is the GPU's memory on a CPU;
- per example (``document_attention``): one causal SDPA call per example, no mask.
Peak memory is the process's resident-set high-water mark over the call, reset just before it (Linux
``/proc/self/clear_refs``), minus the resident set before; glibc is told to return every block over 64 KiB to
the system at once, so freed tensors leave the resident set. The last line is the ratio mask (math) / per
example. Memory, not time: the figures do not depend on load.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import re

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mos_nemo.engine.model.attention import DocumentSpans, document_attention
from mos_nemo.engine.model.gpt import attention_mask_from_segments

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{key}:\s+(\d+) kB", status.read()).group(1)) * 1024


def peak_bytes(fn) -> int:
    """Bytes the resident set grew to above its level before ``fn()``, at its highest during the call."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_THRESHOLD, 65536)  # large blocks are mmapped and unmapped when freed
    libc.mallopt(M_TRIM_THRESHOLD, 0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the high-water mark (VmHWM) to the current resident set
    before = _status_bytes("VmRSS")
    fn()
    return _status_bytes("VmHWM") - before


def packed_row(lengths: list[int], seq: int) -> torch.Tensor:
    """segment_ids [1, seq]: the examples back to back, numbered from 1, then padding (0)."""
    segments = torch.zeros(1, seq, dtype=torch.long)
    start = 0
    for number, length in enumerate(lengths, start=1):
        segments[0, start:start + length] = number
        start += length
    return segments


def attention_inputs(heads: int, groups: int, seq: int, head_dim: int, seed: int = 0):
    """q [1, heads, s, d], k and v [1, groups, s, d], leaves that take gradients."""
    generator = torch.Generator().manual_seed(seed)
    shapes = ((1, heads, seq, head_dim), (1, groups, seq, head_dim), (1, groups, seq, head_dim))
    return [torch.randn(shape, generator=generator).requires_grad_() for shape in shapes]


def masked_attention(q, k, v, segments, math_kernel: bool = False) -> torch.Tensor:
    """The path before: SDPA with the dense block-diagonal mask of ``attention_mask_from_segments``."""
    mask = ~attention_mask_from_segments(segments)  # [b, 1, s, s], True = attend
    backend = sdpa_kernel(SDPBackend.MATH) if math_kernel else contextlib.nullcontext()
    with backend:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


def measure(path: str, q, k, v, segments) -> int:
    """Peak bytes of forward + backward of one attention ``path``: mask | mask-math | documents."""
    spans = DocumentSpans.from_segments(segments)

    def run():
        if path == "documents":
            out = document_attention(q, k, v, spans, k.shape[1])
        else:
            out = masked_attention(q, k, v, segments, math_kernel=path == "mask-math")
        out.sum().backward()
        for tensor in (q, k, v):
            tensor.grad = None

    return peak_bytes(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--seq", type=int, default=2048)
    args = parser.parse_args()
    lengths = [612, 401, 288, 243, 201, 170, 96]  # 2011 of 2048 tokens: a Table 6-like mix, 37 padding
    segments = packed_row(lengths, args.seq)
    q, k, v = attention_inputs(args.heads, args.groups, args.seq, args.head_dim)
    scores = args.heads * args.seq * args.seq * 4
    print(f"one packed row of {args.seq} tokens (examples {lengths}), {args.heads} query / {args.groups} key-value "
          f"heads of {args.head_dim}, fp32, forward + backward; one [heads, s, s] fp32 tensor is {scores / 2**20:.0f} MiB")
    peaks = {}
    for path, label in (("mask", "dense mask, CPU's kernel"), ("mask-math", "dense mask, math kernel (CUDA's)"),
                        ("documents", "per example (now)")):
        peaks[path] = min(measure(path, q, k, v, segments) for _ in range(2))  # the first call pays one-off pages
        print(f"{label:34s} peak {peaks[path] / 2**20:8.1f} MiB")
    print(f"ratio dense mask (math) / per example {peaks['mask-math'] / peaks['documents']:.1f}; "
          f"dense mask (CPU kernel) / per example {peaks['mask'] / peaks['documents']:.2f}")


if __name__ == "__main__":
    main()
