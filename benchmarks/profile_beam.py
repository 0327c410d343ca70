"""Where batched beam search spends its time: torch.profiler over one k = 5 search at the benchmark's sizes.

    python benchmarks/profile_beam.py               # the operator table, then tanh vs sigmoid throughput
    python benchmarks/profile_beam.py --threads 1

The figures quoted in benchmarks/README.md ("35% in tanh", "0.4 G elements/s") come from this script.
"""

from __future__ import annotations

import argparse
import time

import torch
from run import Sizes, random_annotations, random_decoder
from torch.profiler import ProfilerActivity, profile

from captionlib import beam_search


def elements_per_second(op, x: torch.Tensor, reps: int = 20) -> float:
    """Throughput of an elementwise op on x, writing into a preallocated output (no allocation timed)."""
    out = torch.empty_like(x)
    op(x, out=out)  # warm-up
    began = time.perf_counter()
    for _ in range(reps):
        op(x, out=out)
    return x.numel() * reps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", type=int, default=25, help="operators to show")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = Sizes()
    decoder = random_decoder(sizes).eval()
    annotations = random_annotations(sizes, sizes.beam_images)  # (B, P, D)
    beam_search(decoder, annotations, 5, sizes.max_len)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        beam_search(decoder, annotations, 5, sizes.max_len)
        seconds = time.perf_counter() - began
    print(f"one batched search, k = 5, {sizes.beam_images} images, {torch.get_num_threads()} threads: {seconds:.2f} s (profiled)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

    beams_of_one_image = torch.randn(5, sizes.cells, sizes.dim)  # (k, P, A): the looped search's tanh input
    for name, op in (("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        rate = elements_per_second(op, beams_of_one_image)
        shape = ", ".join(map(str, beams_of_one_image.shape))
        print(f"{name:>8}: {rate / 1e9:.2f} G elements/s on a ({shape}) tensor, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
