"""Where batched beam search spends its time: torch.profiler over one k = 5 search at the benchmark's sizes.

    python benchmarks/profile_beam.py               # the operator table, then tanh vs sigmoid throughput
    python benchmarks/profile_beam.py --threads 1
    python benchmarks/profile_beam.py --linears     # what batching gains on each matrix product of a decoder step
    python benchmarks/profile_beam.py --spells 20   # memory bandwidth beside the search's time, round after round
    python benchmarks/profile_beam.py --score 40    # the CPU attention score as it is against the earlier one, in turns

The figures quoted in benchmarks/README.md ("35% in tanh", "0.4 G elements/s") come from this script.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from run import Sizes, random_annotations, random_decoder
from torch.profiler import ProfilerActivity, profile

from captionlib import beam_search
from captionlib.attention import SoftAttention


def elements_per_second(op, x: torch.Tensor, reps: int = 20) -> float:
    """Throughput of an elementwise op on x, writing into a preallocated output (no allocation timed)."""
    out = torch.empty_like(x)
    op(x, out=out)  # warm-up
    began = time.perf_counter()
    for _ in range(reps):
        op(x, out=out)
    return x.numel() * reps / (time.perf_counter() - began)


def linear_seconds(rows: int, fan_in: int, fan_out: int, reps: int = 30) -> float:
    """Seconds of one nn.Linear-sized matrix product (rows, fan_in) x (fan_in, fan_out), weights warm in cache."""
    x, weight, bias = torch.randn(rows, fan_in), torch.randn(fan_out, fan_in), torch.randn(fan_out)
    F.linear(x, weight, bias)  # warm-up
    began = time.perf_counter()
    for _ in range(reps):
        F.linear(x, weight, bias)  # (rows, fan_out)
    return (time.perf_counter() - began) / reps


def print_linears(decoder, sizes: Sizes, k: int = 5) -> None:
    """Each matrix product of Decoder.step at k rows (one image's beams) and at k x beam_images rows (all images)."""
    batch = k * sizes.beam_images
    total_one, total_all, weights_per_step = 0.0, 0.0, 0
    for name, module in decoder.named_modules():
        weights = [(name, module.in_features, module.out_features)] if isinstance(module, torch.nn.Linear) else []
        if isinstance(module, torch.nn.LSTMCell):
            weights = [(f"{name}.weight_ih", module.input_size, 4 * module.hidden_size), (f"{name}.weight_hh", module.hidden_size, 4 * module.hidden_size)]
        for label, fan_in, fan_out in weights:
            if label in ("attention.W_a", "init_h", "init_c"):
                continue  # applied once per image, not at every step
            one, every = linear_seconds(k, fan_in, fan_out), linear_seconds(batch, fan_in, fan_out)
            total_one, total_all, weights_per_step = total_one + one, total_all + every, weights_per_step + fan_in * fan_out
            print(
                f"{label:>20} {fan_in:>5} x {fan_out:<5}  {k} rows {one * 1e3:6.2f} ms ({fan_in * fan_out * 4 / one / 1e9:5.1f} GB/s of weights)"
                f"  {batch} rows {every * 1e3:6.2f} ms ({2 * batch * fan_in * fan_out / every / 1e9:4.0f} GFLOP/s)"
                f"  batching gains {sizes.beam_images * one / every:4.2f}x"
            )
    print(
        f"{'all of them':>20}  batching gains {sizes.beam_images * total_one / total_all:4.2f}x per image on the matrix products of a step; "
        f"{weights_per_step / 1e6:.1f}M weights ({weights_per_step * 4 / 1e6:.0f} MB) read per step, {weights_per_step * batch / 1e9:.2f} GMAC at {batch} rows"
    )


def calls_per_second(run, seconds: float = 0.3) -> float:
    """How many times run() completes per second, over about `seconds`."""
    began, calls = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        run()
        calls += 1
    return calls / (time.perf_counter() - began)


def print_spells(decoder, annotations: torch.Tensor, sizes: Sizes, rounds: int) -> None:
    """Round by round: a large matrix product's speed, a streaming add's bandwidth, one batched k = 5 search's time."""
    a, b = torch.randn(640, 2048), torch.randn(2048, 3072)  # a large matrix product: bound by arithmetic alone
    source = torch.randn(16 << 20)  # 64 MB, far beyond the caches
    target = torch.empty_like(source)
    for round_ in range(rounds):
        flops = 2 * a.size(0) * a.size(1) * b.size(1) * calls_per_second(lambda: torch.mm(a, b))
        bandwidth = 2 * source.numel() * 4 * calls_per_second(lambda: torch.add(source, 1, out=target))  # read + write
        began = time.perf_counter()
        beam_search(decoder, annotations, 5, sizes.max_len)
        seconds = time.perf_counter() - began
        print(f"round {round_ + 1:>2}: matmul {flops / 1e9:4.0f} GFLOP/s, streaming add {bandwidth / 1e9:5.1f} GB/s, batched search {seconds:.2f} s", flush=True)


def score_with_product(attention: SoftAttention, projected: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """SoftAttention.score_cpu_chunk before 2026-11-25: tanh x as 2σ(2x) − 1 into a second buffer, then a product with w."""
    sigma = (projected.unsqueeze(1) + query.unsqueeze(2)).mul_(2).sigmoid_()  # (B, k, P, A)  σ(2x)
    return attention.w(sigma.mul(2).sub_(1)).squeeze(3)  # (B, k, P)  w^T tanh x


def print_score_rounds(decoder, annotations: torch.Tensor, sizes: Sizes, rounds: int) -> None:
    """Round by round: one batched k = 5 search with SoftAttention.score_cpu_chunk, then one with score_with_product.

    Each search's minor page faults are printed beside its time: a fault is a page the allocator had handed
    back to the kernel and asks for again.
    """
    variants = {"score": SoftAttention.score_cpu_chunk, "with product": score_with_product}
    seconds, faults, captions = {}, {}, {}
    try:
        for round_ in range(rounds + 1):  # round 0 warms both up
            for name, method in variants.items():
                SoftAttention.score_cpu_chunk = method
                faults_before, began = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                captions[name] = [c.tokens for c in beam_search(decoder, annotations, 5, sizes.max_len)]
                seconds[name] = time.perf_counter() - began
                faults[name] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
            if round_:
                cells = ", ".join(f"{name} {seconds[name]:.2f} s ({faults[name]:>5} faults)" for name in variants)
                print(f"round {round_:>2}: {cells}, ratio {seconds['with product'] / seconds['score']:.2f}", flush=True)
    finally:
        SoftAttention.score_cpu_chunk = variants["score"]
    assert captions["score"] == captions["with product"], "the two scores gave different captions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rows", type=int, default=25, help="operators to show")
    parser.add_argument("--linears", action="store_true", help="only: each matrix product of a step, 5 rows vs all images' rows")
    parser.add_argument("--spells", type=int, metavar="ROUNDS", help="only: memory bandwidth and search time, ROUNDS times")
    parser.add_argument("--score", type=int, metavar="ROUNDS", help="only: the search with this score and the earlier one, in turns")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = Sizes()
    decoder = random_decoder(sizes).eval()
    if args.linears:
        return print_linears(decoder, sizes)
    annotations = random_annotations(sizes, sizes.beam_images)  # (B, P, D)
    beam_search(decoder, annotations, 5, sizes.max_len)  # warm-up
    if args.spells:
        return print_spells(decoder, annotations, sizes, args.spells)
    if args.score:
        return print_score_rounds(decoder, annotations, sizes, args.score)
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
