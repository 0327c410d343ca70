"""Speed and memory of captionlib's decoder at full scale on the CPU: 14x14x2048 annotations, 512 wide, 10 000 words.

    python benchmarks/run.py                 # a Markdown table
    python benchmarks/run.py --json          # one {"metric", "value", "unit", "note"} object per line
    python benchmarks/run.py --quick         # small sizes, a smoke run of a few seconds
    python benchmarks/run.py --only beam     # one group (see BENCHMARKS at the bottom)
    python benchmarks/run.py --only book     # the book's shapes model: float32 vs bfloat16 autocast, one training step
    python benchmarks/run.py --only transformer  # the Transformer decoder against the LSTM at the book's sizes (chapter 13)
    python benchmarks/run.py --reference PATH  # also sgrvinod's tutorial from a checkout at PATH (benchmarks/reference.py)
    python benchmarks/run.py --threads 1     # on a CPU shared with other jobs (see README.md)
    python benchmarks/run.py --only gpu      # on a CUDA GPU: mixed precision on/off, beam search (in the default run there)
    python benchmarks/run.py --only compile  # the default float32 training step, eager against torch.compile (minutes)
    python benchmarks/run.py --baseline REV  # today's training step against the decoder of captionlib/ at git REV (default 6a0df98)

Each benchmark is a small function that takes the Sizes and yields metric dicts; all of them use random
weights and random features with a fixed seed (the encoder is not timed), so the run needs no data.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import dataclasses
import importlib.util
import io
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from captionlib import (
    CaptionModel,
    Decoder,
    ModelConfig,
    Vocabulary,
    beam_search,
    beam_search_one_image,
    caption_loss,
    greedy_decode,
)
from captionlib.config import Config, ShapesConfig
from captionlib.data import collate_grouped
from captionlib.evaluate import split_dataset
from captionlib.features import feature_cache
from captionlib.hard_attention import reinforce_terms
from captionlib.shapes import generate_split
from captionlib.train import autocast_dtype
from captionlib.transformer import MATCHED_WIDTHS, RecomputingDecoder
from captionlib.vocab import SPECIALS

Metric = dict  # {"metric": str, "value": float | bool, "unit": str, "note": str, optionally "target_min": float}
# The code as the speed issue found it (its float32 step of the book's model: 0.28-0.29 s on a 2-core CPU without
# AVX-512): the baseline group times today's training step against it unless --baseline names another revision.
ISSUE_BASELINE = "6a0df98a8d0d4f0f69ee93d2149c2a2dd85d3774"


@dataclass(frozen=True)
class Sizes:
    """The sizes under test. Defaults: 14x14 grid of 2048-d (ResNet) annotations, 512-wide decoder, 10 000 words."""

    cells: int = 196  # P = 14 x 14
    encoder_dim: int = 2048  # D
    dim: int = 512  # embedding m, attention and decoder n
    vocab: int = 10_000  # V
    batch: int = 32  # captions per training step, one image each
    min_words: int = 12  # caption lengths are drawn uniformly in [min_words, max_words]
    max_words: int = 22
    beam_images: int = 32  # images decoded by one batched beam search
    max_len: int = 20  # decoding limit in words
    reps: int = 3  # timed repetitions after one warm-up; the median is reported
    seed: int = 0


QUICK = Sizes(cells=49, encoder_dim=256, dim=128, vocab=1000, batch=8, beam_images=8, max_len=8, reps=1)


def metric(name: str, value, unit: str = "", note: str = "", **extra) -> Metric:
    """One output row."""
    row = {"metric": name, "value": value}
    if unit:
        row["unit"] = unit
    if note:
        row["note"] = note
    return {**row, **extra}


def median_seconds(runs: dict[str, Callable[[], object]], reps: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each callable over `reps` rounds, after one warm-up round; also each one's last result.

    The callables take turns within a round, so a burst of load from other processes hits them alike
    and their ratio stays meaningful on a shared machine.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for round_ in range(reps + 1):
        for name, run in runs.items():
            began = time.perf_counter()
            results[name] = run()
            if round_:  # round 0 is the warm-up: allocator, thread pool, first-call paths
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(t) for name, t in times.items()}, results


def random_decoder(sizes: Sizes, klass: type[Decoder] = Decoder) -> Decoder:
    """A decoder with the seed's random weights (every class built with the same seed gets the same weights)."""
    torch.manual_seed(sizes.seed)
    return klass(sizes.vocab, sizes.encoder_dim, paper_config(sizes))


def paper_config(sizes: Sizes) -> ModelConfig:
    """The decoder's widths at these sizes: embedding, attention and LSTM all sizes.dim."""
    return ModelConfig(embed_dim=sizes.dim, attention_dim=sizes.dim, decoder_dim=sizes.dim)


def random_annotations(sizes: Sizes, n: int) -> torch.Tensor:
    """Stand-in for the encoder's output: n images' annotation grids (n, P, D)."""
    generator = torch.Generator().manual_seed(sizes.seed + 1)
    return torch.randn(n, sizes.cells, sizes.encoder_dim, generator=generator)  # (n, P, D)


def random_captions(sizes: Sizes) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch <start> w1 .. wk <end> <pad>.. with k uniform in [min_words, max_words] -> (N, L), (N,)."""
    generator = torch.Generator().manual_seed(sizes.seed + 2)
    words = torch.randint(sizes.min_words, sizes.max_words + 1, (sizes.batch,), generator=generator)  # (N,)
    lengths = words + 2  # (N,) with <start> and <end>
    captions = torch.full((sizes.batch, int(lengths.max())), Vocabulary.pad_id, dtype=torch.long)  # (N, L)
    # Words are drawn from the ids after <pad> <start> <end> <unk>.
    for i, k in enumerate(words.tolist()):
        captions[i, 0] = Vocabulary.start_id
        captions[i, 1 : k + 1] = torch.randint(len(SPECIALS), sizes.vocab, (k,), generator=generator)  # (k,)
        captions[i, k + 1] = Vocabulary.end_id
    return captions, lengths


class InLoopProjectionDecoder(Decoder):
    """The common tutorial shortcut: W_a a is recomputed inside the time loop, at every step, for every caption.

    Decoder.forward still projects once up front; this step ignores that result and projects again.
    """

    def advance(self, emb, state, annotations, projected, sample=False):
        """Decoder.advance with W_a a recomputed from the annotations (B, P, D) -> (B, P, A) on every call."""
        return super().advance(emb, state, annotations, self.attention.project(annotations), sample)


def train_step(
    model: Decoder | CaptionModel,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    inputs: tuple,
    dtype: torch.dtype | None = None,
    attention_lambda: float = 1.0,
    grad_clip: float = 5.0,
) -> None:
    """One teacher-forced step as captionlib.train takes it: forward, eq. 14 loss, backward, clipping, Adam.

    inputs are the model's arguments: (annotations, captions, lengths) for a Decoder, (images, captions, lengths,
    image_of_caption) for a CaptionModel. With a dtype the forward runs under autocast: float16 with an enabled
    scaler (GPU), which scales the loss, or bfloat16 (CPU); a disabled scaler passes everything through unchanged.
    """
    captions, lengths = inputs[1], inputs[2]  # (N, L), (N,)
    with torch.autocast(inputs[0].device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
        logits, alphas, _ = model(*inputs)  # (N, T, V), (N, T, P)
    loss = caption_loss(logits.float(), captions, lengths, alphas.float(), attention_lambda).total
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


def bench_train(sizes: Sizes) -> Iterator[Metric]:
    """Training throughput, and what projecting W_a a once per image (not once per step) saves."""
    annotations = random_annotations(sizes, sizes.batch)  # (N, P, D)
    captions, lengths = random_captions(sizes)  # (N, L), (N,)
    once, per_step = random_decoder(sizes), random_decoder(sizes, InLoopProjectionDecoder)

    # Check, not timing: the two decoders compute the same function (dropout off).
    with torch.no_grad():
        logits_once = once.eval()(annotations, captions, lengths)[0]  # (N, T, V)
        logits_per_step = per_step.eval()(annotations, captions, lengths)[0]  # (N, T, V)
    torch.testing.assert_close(logits_per_step, logits_once)
    once.train()
    per_step.train()

    optimizers = {d: torch.optim.Adam(d.parameters(), lr=4e-4) for d in (once, per_step)}
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    seconds, _ = median_seconds(
        {
            "once": partial(train_step, once, optimizers[once], no_amp, (annotations, captions, lengths)),
            "per_step": partial(train_step, per_step, optimizers[per_step], no_amp, (annotations, captions, lengths)),
        },
        sizes.reps,
    )
    yield metric(
        "train_captions_per_s",
        sizes.batch / seconds["once"],
        "captions/s",
        f"forward+backward+Adam, batch {sizes.batch}, {seconds['once']:.2f} s/step",
    )
    yield metric(
        "train_speedup_vs_inloop_projection",
        seconds["per_step"] / seconds["once"],
        "x",
        f"W_a a projected at every step: {sizes.batch / seconds['per_step']:.2f} captions/s; same logits (checked)",
        target_min=2.0,
    )


def hard_train_step(decoder: Decoder, optimizer: torch.optim.Optimizer, annotations, captions, lengths) -> None:
    """One teacher-forced step of a hard-attention decoder on a minibatch that samples its locations: eq. 12's terms."""
    logits, alphas, locations = decoder(annotations, captions, lengths, sample_locations=True)  # (N, T, V), (N, T, P), (N, T)
    loss = caption_loss(logits, captions, lengths, alphas, attention_lambda=1.0).total
    surrogate, entropy = reinforce_terms(logits, captions, lengths, alphas, locations, decoder.attention.baseline)
    optimizer.zero_grad(set_to_none=True)
    (loss + surrogate - 0.002 * entropy).backward()
    torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
    optimizer.step()


def bench_hard(sizes: Sizes) -> Iterator[Metric]:
    """A hard-attention training step (locations sampled) against a soft one, same sizes, same weights, same run."""
    annotations = random_annotations(sizes, sizes.batch)  # (N, P, D)
    captions, lengths = random_captions(sizes)  # (N, L), (N,)
    soft = random_decoder(sizes).train()
    torch.manual_seed(sizes.seed)
    hard = Decoder(sizes.vocab, sizes.encoder_dim, ModelConfig(attention="hard", embed_dim=sizes.dim, attention_dim=sizes.dim, decoder_dim=sizes.dim))
    hard.train()
    optimizers = {d: torch.optim.Adam(d.parameters(), lr=4e-4) for d in (soft, hard)}
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    seconds, _ = median_seconds(
        {
            "soft": partial(train_step, soft, optimizers[soft], no_amp, (annotations, captions, lengths)),
            "hard": partial(hard_train_step, hard, optimizers[hard], annotations, captions, lengths),
        },
        sizes.reps,
    )
    yield metric(
        "hard_train_step_vs_soft",
        seconds["hard"] / seconds["soft"],
        "x",
        f"a minibatch that samples s_t (eq. 8) and adds eq. 12's terms: {seconds['hard']:.2f} s against soft's {seconds['soft']:.2f} s; "
        f"minibatches on the expected context cost what soft ones do",
    )


def beam_seconds_per_image(
    decoder: Decoder, annotations: torch.Tensor, k: int, sizes: Sizes, wrap: Callable = lambda run: run
) -> tuple[dict[str, float], dict[str, list]]:
    """Seconds per image and captions of the batched beam search and of beam_search_one_image in a loop.

    The two take turns in every round (median_seconds), so a slow spell of the machine hits both alike:
    their ratio is what the benchmark reports. `wrap` adapts each run (a GPU run waits for the device).
    """

    def looped() -> list:
        return [beam_search_one_image(decoder, image, k, sizes.max_len) for image in annotations]  # image: (P, D)

    runs = {"batched": partial(beam_search, decoder, annotations, k, sizes.max_len), "looped": looped}
    seconds, captions = median_seconds({name: wrap(run) for name, run in runs.items()}, sizes.reps)
    return {name: s / len(annotations) for name, s in seconds.items()}, captions


def bench_beam(sizes: Sizes) -> Iterator[Metric]:
    """Beam search of many images at once vs. the plain loop over images, for k = 3 and 5."""
    decoder = random_decoder(sizes).eval()
    annotations = random_annotations(sizes, sizes.beam_images)  # (B, P, D)
    identical = True
    for k in (3, 5):
        per_image, captions = beam_seconds_per_image(decoder, annotations, k, sizes)
        identical &= [c.tokens for c in captions["batched"]] == [c.tokens for c in captions["looped"]]
        ended = sum(c.finished for c in captions["batched"])
        yield metric(
            f"beam_images_per_s_k{k}",
            1.0 / per_image["batched"],
            "images/s",
            f"{sizes.beam_images} images in one search, max_len {sizes.max_len}; {ended} ended with <end>",
        )
        if k == 5:
            yield metric(
                "beam_speedup_k5",
                per_image["looped"] / per_image["batched"],
                "x",
                f"vs beam_search_one_image in a loop: {1.0 / per_image['looped']:.2f} images/s",
                target_min=5.0,
            )
    yield metric(
        "beam_identical", identical, note="batched and looped beam search give the same tokens for every image, k = 3 and 5"
    )


def bench_gpu(sizes: Sizes) -> Iterator[Metric]:
    """On a CUDA GPU: training throughput with and without float16 mixed precision, and batched vs looped beam search."""
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    annotations = random_annotations(sizes, sizes.batch).to(device)  # (N, P, D)
    captions, lengths = (t.to(device) for t in random_captions(sizes))  # (N, L), (N,)
    decoders = {amp: random_decoder(sizes).to(device).train() for amp in (False, True)}
    optimizers = {amp: torch.optim.Adam(d.parameters(), lr=4e-4) for amp, d in decoders.items()}
    scalers = {amp: torch.amp.GradScaler("cuda", enabled=amp) for amp in (False, True)}

    def synchronised(run: Callable[[], object]) -> Callable[[], object]:
        """GPU work is asynchronous: wait for it so that the wall time is the work's."""
        return lambda: (run(), torch.cuda.synchronize(device))[0]

    seconds, _ = median_seconds(
        {
            amp: synchronised(partial(train_step, decoders[amp], optimizers[amp], scalers[amp], (annotations, captions, lengths), torch.float16 if amp else None))
            for amp in (False, True)
        },
        max(sizes.reps, 5),
    )
    yield metric("gpu_train_captions_per_s_fp32", sizes.batch / seconds[False], "captions/s", f"{name}, batch {sizes.batch}")
    yield metric("gpu_train_captions_per_s_amp", sizes.batch / seconds[True], "captions/s", f"{name}, float16 autocast + GradScaler")
    yield metric("gpu_amp_speedup", seconds[False] / seconds[True], "x", name)

    decoder = random_decoder(sizes).to(device).eval()
    images = random_annotations(sizes, sizes.beam_images).to(device)  # (B, P, D)
    per_image, _ = beam_seconds_per_image(decoder, images, 5, sizes, wrap=synchronised)
    yield metric("gpu_beam_images_per_s_k5", 1.0 / per_image["batched"], "images/s", f"{name}, {sizes.beam_images} images in one search")
    yield metric(
        "gpu_beam_speedup_k5",
        per_image["looped"] / per_image["batched"],
        "x",
        f"vs beam_search_one_image in a loop: {1.0 / per_image['looped']:.2f} images/s",
    )


def epoch_seconds(model: CaptionModel, dataset, batch_images: int, optimizer: torch.optim.Optimizer) -> float:
    """Wall time of one pass: annotations from the inputs (encoder or cache), then a decoder training step."""
    loader = DataLoader(dataset, batch_size=batch_images, collate_fn=collate_grouped)
    began = time.perf_counter()
    for inputs, captions, lengths, image_of_caption, _ in loader:
        with torch.no_grad():
            annotations = inputs if inputs.dim() == 3 else model.encoder(inputs)  # (B, P, D) either way
        logits, alphas, _ = model.decoder(annotations, captions, lengths, image_of_caption)  # (N, T, V), (N, T, P)
        loss = caption_loss(logits, captions, lengths, alphas, attention_lambda=1.0).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - began


def bench_feature_cache(sizes: Sizes) -> Iterator[Metric]:
    """Epoch time with annotations recomputed by the encoder vs read from the float16 memmap cache."""
    paper = sizes.encoder_dim == 2048
    backbone, image_size, grid, n_images = ("resnet50", 224, 14, 96) if paper else ("resnet18", 64, 4, 16)
    torch.manual_seed(sizes.seed)
    split = generate_split("train", n_images, ShapesConfig(seed=sizes.seed))
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    cfg = ModelConfig(encoder=backbone, pretrained=False, grid_size=grid, image_size=image_size, dropout=0.0,
                      embed_dim=sizes.dim, attention_dim=sizes.dim, decoder_dim=sizes.dim)  # fmt: skip
    model = CaptionModel(cfg, len(vocab))
    # Random weights cost what ImageNet's cost; freeze them as a pretrained encoder would be.
    model.encoder.trainable = 0
    model.encoder.requires_grad_(False)
    model.train()
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=1e-4)
    images = split_dataset(split, vocab, image_size)
    with tempfile.TemporaryDirectory() as root:
        began = time.perf_counter()
        cached = feature_cache(model.encoder, images, Path(root), image_size, grid)
        build = time.perf_counter() - began
        epoch_seconds(model, Subset(cached, range(sizes.batch)), sizes.batch, optimizer)  # warm-up
        without = epoch_seconds(model, images, sizes.batch, optimizer)
        with_cache = epoch_seconds(model, cached, sizes.batch, optimizer)
    shape = f"{grid}x{grid}x{model.encoder.dim}"
    yield metric("feature_cache_epoch_s_without", round(without, 2), "s", f"{n_images} shapes images, frozen {backbone} at {image_size} px -> {shape}")
    yield metric("feature_cache_epoch_s_with", round(with_cache, 2), "s", "annotations read from the float16 memmap")
    yield metric("feature_cache_build_s", round(build, 2), "s", "encoding every image once (paid in the first epoch)")
    yield metric("feature_cache_epoch_speedup", round(without / with_cache, 2), "x", "every epoch after the first")


BOOK_WARM_BATCHES = 12  # the book group's warm-up: enough batches to meet most of the shapes an epoch of training meets


def book_batches(sizes: Sizes, count: int) -> tuple[Config, int, list[tuple]]:
    """The book's default config, its vocabulary size and `count` batches of its training images, 5 captions each."""
    book = Config()
    images = 8 if sizes == QUICK else book.train.batch_images  # a batch of the default size: 48 images
    split = generate_split("train", images * count, ShapesConfig(seed=sizes.seed))
    vocab = Vocabulary.build(c for caps in split.captions for c in caps)
    dataset = split_dataset(split, vocab, book.model.image_size)
    starts = range(0, images * count, images)
    return book, len(vocab), [collate_grouped([dataset[i] for i in range(j, j + images)])[:4] for j in starts]  # images, captions, lengths, image_of_caption


def book_batch(sizes: Sizes) -> tuple[Config, int, tuple]:
    """The book's default config, its vocabulary size and one batch of its training images with their 5 captions each."""
    book, V, (batch,) = book_batches(sizes, 1)
    return book, V, batch


def bench_book_model(sizes: Sizes) -> Iterator[Metric]:
    """The book's default shapes model, one training step in float32 and under bfloat16 autocast (train.amp on a CPU)."""
    if autocast_dtype(Config(), torch.device("cpu")) is None:
        yield metric("book_train_bf16_speedup", 0.0, "x", "not measured: this CPU has no native bfloat16 (train.amp keeps float32 here)")
        return
    # A new batch each round: training's batches differ in their captions' lengths, so in the shapes of its products.
    # Training meets most shapes in its first epoch and reuses them after: warm up on BOOK_WARM_BATCHES batches first.
    rounds = max(sizes.reps, 5)
    book, V, batches = book_batches(sizes, BOOK_WARM_BATCHES + rounds + 1)  # + median_seconds' own warm-up round
    models = {}
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(sizes.seed)
        models[dtype] = CaptionModel(book.model, V).train()
    optimizers = {dtype: torch.optim.Adam(m.parameters(), lr=book.train.lr) for dtype, m in models.items()}
    no_amp = torch.amp.GradScaler("cpu", enabled=False)  # bfloat16 needs no loss scaling

    def stepper(dtype: torch.dtype | None) -> Callable[[], None]:
        """Steps of that precision's model, each on the next batch: both precisions see the same batch in the same round."""
        upcoming = iter(batches)
        return lambda: train_step(models[dtype], optimizers[dtype], no_amp, next(upcoming), dtype, book.train.attention_lambda, book.train.grad_clip)

    steppers = {dtype: stepper(dtype) for dtype in models}
    for _ in range(BOOK_WARM_BATCHES):
        for step in steppers.values():
            step()
    seconds, _ = median_seconds(steppers, rounds)
    note = (f"{batches[0][0].size(0)} images x 5 captions, a new batch each round, encoder + decoder + Adam: "
            f"{seconds[None]:.3f} s float32, {seconds[torch.bfloat16]:.3f} s bfloat16")  # fmt: skip
    yield metric("book_train_bf16_speedup", seconds[None] / seconds[torch.bfloat16], "x", note)


def bench_transformer(sizes: Sizes) -> Iterator[Metric]:
    """The Transformer decoder against the book's LSTM decoder at the book's sizes (P = 64, D = 130, 38 words, 48
    images x 5 captions a step): training step time at matched parameter counts for 1, 2 and 4 layers, and decoding
    images/s with and without the key/value cache. Random weights and annotations: speed, not quality."""
    book = Config()
    images = 8 if sizes == QUICK else book.train.batch_images
    V, P, D = 38, book.model.grid_size**2, book.model.encoder_channels + 2
    generator = torch.Generator().manual_seed(sizes.seed)
    annotations = torch.randn(images, P, D, generator=generator)  # (B, P, D)
    lengths = torch.randint(11, 18, (images * 5,), generator=generator)  # (N,) shapes captions: 9-15 words + <start> <end>
    captions = torch.randint(len(SPECIALS), V, (images * 5, int(lengths.max())), generator=generator)  # (N, L)
    captions[:, 0] = Vocabulary.start_id
    image_of_caption = torch.arange(images).repeat_interleave(5)  # (N,)
    decoders = {"lstm": CaptionModel(book.model, V).decoder}
    for layers, width in MATCHED_WIDTHS.items():
        torch.manual_seed(sizes.seed)
        cfg = dataclasses.replace(book.model, decoder="transformer", layers=layers, d_model=width, ff_dim=4 * width, dropout=0.1)
        decoders[f"transformer-{layers}"] = CaptionModel(cfg, V).decoder
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    inputs = (annotations, captions, lengths, image_of_caption)
    steps = {name: partial(train_step, d.train(), torch.optim.Adam(d.parameters(), lr=1e-3), no_amp, inputs) for name, d in decoders.items()}
    seconds, _ = median_seconds(steps, max(sizes.reps, 5))
    for name, decoder in decoders.items():
        if name != "lstm":
            parameters = sum(p.numel() for p in decoder.parameters()) / sum(p.numel() for p in decoders["lstm"].parameters())
            yield metric(f"{name.replace('-', '_')}_layer_train_speedup", seconds["lstm"] / seconds[name], "x",
                         f"LSTM step {seconds['lstm']:.3f} s, this {seconds[name]:.3f} s; {parameters:.1%} of the LSTM's parameters")  # fmt: skip
    transformer, lstm = decoders["transformer-2"].eval(), decoders["lstm"].eval()
    uncached, identical = RecomputingDecoder(transformer), True
    for k in (1, 3):
        search = (lambda d: partial(greedy_decode, d, annotations, 20)) if k == 1 else (lambda d: partial(beam_search, d, annotations, k, 20))
        seconds, captions_of = median_seconds({"lstm": search(lstm), "cached": search(transformer), "uncached": search(uncached)}, sizes.reps)
        identical &= [c.tokens for c in captions_of["cached"]] == [c.tokens for c in captions_of["uncached"]]
        how = "greedy" if k == 1 else f"beam {k}"
        yield metric(f"transformer_cache_speedup_k{k}", seconds["uncached"] / seconds["cached"], "x",
                     f"{how}, 20 steps max: {images / seconds['cached']:.0f} images/s with the cache, {images / seconds['uncached']:.0f} without; "
                     f"the LSTM {images / seconds['lstm']:.0f}")  # fmt: skip
        yield metric(f"transformer_vs_lstm_decoding_k{k}", seconds["lstm"] / seconds["cached"], "x", f"{how}: images/s of the cached Transformer over the LSTM's")
    yield metric("transformer_cache_identical", identical, note="greedy and beam 3 give the same tokens with the cache as recomputing the prefix")


def bench_compile(sizes: Sizes) -> Iterator[Metric]:
    """The book's default training step in float32, eager against torch.compile of its decoder: the step's speed-up
    and the compile time it costs (the first step), from the same weights, taking turns. Run with --only compile."""
    book, V, inputs = book_batch(sizes)
    models, optimizers = {}, {}
    for name in ("eager", "compiled"):
        torch.manual_seed(sizes.seed)
        models[name] = CaptionModel(book.model, V).train()
        optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=book.train.lr)
    import torch._inductor.config as inductor_config

    inductor_config.force_disable_caches = True  # a first run's compile, not one read from an earlier run's cache
    try:
        models["compiled"].decoder = torch.compile(models["compiled"].decoder)
    except Exception as error:  # no compiler, or a platform inductor does not support
        yield metric("compile_train_speedup", 0.0, "x", f"not measured: torch.compile failed ({type(error).__name__}: {error})")
        return
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    steps = {name: partial(train_step, m, optimizers[name], no_amp, inputs, None, book.train.attention_lambda, book.train.grad_clip) for name, m in models.items()}
    began = time.perf_counter()
    steps["compiled"]()  # compiles
    compile_seconds = time.perf_counter() - began
    seconds, _ = median_seconds(steps, max(sizes.reps, 5))
    epoch_steps = book.shapes.n_train // book.train.batch_images
    saved = (seconds["eager"] - seconds["compiled"]) * epoch_steps * book.train.epochs
    yield metric("compile_train_speedup", seconds["eager"] / seconds["compiled"], "x",
                 f"float32 step {seconds['eager']:.3f} s eager, {seconds['compiled']:.3f} s with the decoder compiled")  # fmt: skip
    yield metric("compile_first_step_s", compile_seconds, "s",
                 f"the first compiled step, caches off; {book.train.epochs} epochs of {epoch_steps} steps would win {saved:.0f} s back "
                 f"(training sees other caption lengths too, each a recompile until torch marks the length dynamic)")  # fmt: skip


def load_reference():
    """benchmarks/reference.py, loaded by its path: run.py may itself be loaded by path, with another sys.path."""
    spec = importlib.util.spec_from_file_location("benchmarks_reference", Path(__file__).with_name("reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_reference(sizes: Sizes, path: Path | None = None) -> Iterator[Metric]:
    """captionlib against sgrvinod's tutorial (benchmarks/reference.py), same sizes, weights of the same seed, one run:
    a training step of each decoder, and beam search at k = 5 for the same number of steps."""
    if path is None:
        yield metric("reference", "skipped", note="pass --reference PATH, a checkout of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning")
        return
    reference = load_reference()
    models, caption = reference.load(path)
    reference.image_reader(caption, sizes.seed)
    annotations = random_annotations(sizes, sizes.batch)  # (N, P, D)
    captions, lengths = random_captions(sizes)  # (N, L), (N,)
    torch.manual_seed(sizes.seed)
    theirs = models.DecoderWithAttention(sizes.dim, sizes.dim, sizes.dim, sizes.vocab, sizes.encoder_dim).train()
    ours = random_decoder(sizes).train()
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    seconds, _ = median_seconds(
        {
            "ours": partial(train_step, ours, torch.optim.Adam(ours.parameters(), lr=4e-4), no_amp, (annotations, captions, lengths)),
            "theirs": partial(reference.train_step, theirs, torch.optim.Adam(theirs.parameters(), lr=4e-4), annotations, captions, lengths),
        },
        sizes.reps,
    )
    yield metric("reference_train_captions_per_s", sizes.batch / seconds["theirs"], "captions/s", f"sgrvinod's decoder and train() step, batch {sizes.batch}")
    yield metric("train_speedup_vs_reference", seconds["theirs"] / seconds["ours"], "x",
                 f"captionlib {sizes.batch / seconds['ours']:.2f} captions/s: forward, loss, backward, clipping, Adam", target_min=4.0)  # fmt: skip

    # Beam search, k = 5. caption.py stops at 51 steps or when every hypothesis has ended. With <end>'s output bias at
    # -10^4 in both decoders none ends, so both searches run the same 51 steps with 5 live hypotheses an image
    # (captionlib: max_len 51). The tutorial then has no finished caption to return and raises ValueError: expected,
    # after all its work is done.
    steps, images = 51, annotations[: sizes.beam_images]  # (B, P, D)
    word_map = {f"w{i}": i for i in range(sizes.vocab)}  # caption.py reads only <start>, <end> and the size
    word_map["<start>"], word_map["<end>"] = word_map.pop(f"w{Vocabulary.start_id}"), word_map.pop(f"w{Vocabulary.end_id}")
    encoder = reference.FixedEncoder()

    def their_search() -> int:
        """caption_image_beam_search on each image -> how many images ended no hypothesis (all, expected)."""
        unfinished = 0
        for image in images:
            encoder.annotations = image  # (P, D)
            try:
                caption.caption_image_beam_search(encoder, theirs, "unread.jpg", word_map, beam_size=5)
            except ValueError as error:  # max() of its empty list of finished captions
                if "empty" not in str(error):
                    raise
                unfinished += 1
        return unfinished

    theirs.eval(), ours.eval()
    with torch.no_grad():  # the tutorial's scripts build autograd graphs while decoding; spared here
        theirs.fc.bias[Vocabulary.end_id] = ours.L_o.bias[Vocabulary.end_id] = -1e4
        seconds, results = median_seconds({"ours": partial(beam_search, ours, images, 5, steps), "theirs": their_search}, sizes.reps)
    assert results["theirs"] == len(images) and not any(c.finished for c in results["ours"]), "a hypothesis ended: unequal work"
    yield metric("reference_beam_images_per_s_k5", len(images) / seconds["theirs"], "images/s",
                 f"caption_image_beam_search, one image at a time, {steps} steps (the encoder not timed)")  # fmt: skip
    yield metric("beam_speedup_vs_reference_k5", seconds["theirs"] / seconds["ours"], "x",
                 f"captionlib's batched search, {len(images)} images: {len(images) / seconds['ours']:.2f} images/s, {steps} steps each", target_min=15.0)  # fmt: skip


def decoder_at(revision: str) -> type[Decoder]:
    """captionlib.decoder.Decoder as it was at a git revision: that revision's captionlib/, imported beside today's."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "archive", revision, "captionlib"], cwd=root, capture_output=True)
    if archive.returncode:
        raise SystemExit(f"benchmarks/run.py: --baseline {revision}: {archive.stderr.decode().strip()}")
    name = "captionlib_at_" + re.sub(r"\W", "_", revision)  # e.g. origin/main; its relative imports stay inside it
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    atexit.register(shutil.rmtree, folder, True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    spec = importlib.util.spec_from_file_location(name, folder / "captionlib" / "__init__.py",
                                                  submodule_search_locations=[str(folder / "captionlib")])  # fmt: skip
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.decoder").Decoder


def known_revision(revision: str) -> bool:
    """Whether git, in this repository, knows the commit (a shallow clone or an unpacked archive may not)."""
    root = Path(__file__).resolve().parent.parent
    try:
        found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=root, capture_output=True)
    except OSError:  # no git on this machine
        return False
    return found.returncode == 0


def bench_baseline(sizes: Sizes, revision: str | None = None) -> Iterator[Metric]:
    """Today's training step against the decoder (and its attention) at git revision REV, float32, same weights, in turns:
    at the paper's sizes (decoder alone) and the book's default model (encoder + decoder + Adam). Without REV: against
    ISSUE_BASELINE, where git has it."""
    if revision is None:
        if not known_revision(ISSUE_BASELINE):
            yield metric("baseline", "skipped", note=f"git does not know {ISSUE_BASELINE} (a shallow clone?): pass --baseline REV, a git revision of this repository")
            return
        revision = ISSUE_BASELINE
    label = revision[:7] if revision == ISSUE_BASELINE else revision  # the metric's name: today's step against REV
    then_class = decoder_at(revision)
    annotations = random_annotations(sizes, sizes.batch)  # (N, P, D)
    captions, lengths = random_captions(sizes)  # (N, L), (N,)
    book, V, book_inputs = book_batch(sizes)
    torch.manual_seed(sizes.seed)
    book_today = CaptionModel(book.model, V)
    no_amp = torch.amp.GradScaler("cpu", enabled=False)
    book_then = copy.deepcopy(book_today)
    book_then.decoder = decoder_like(book_today.decoder, then_class, book_today.encoder.dim, book.model)
    paper_today = random_decoder(sizes)
    paper_then = decoder_like(paper_today, then_class, sizes.encoder_dim, paper_config(sizes))
    for where, models, inputs, extra in (
        ("paper", {"today": paper_today, "then": paper_then}, (annotations, captions, lengths), ()),
        ("book", {"today": book_today, "then": book_then}, book_inputs, (None, book.train.attention_lambda, book.train.grad_clip)),
    ):
        with torch.no_grad():  # check, not timing: the same function of the same weights (dropout off)
            same = [m.eval()(*inputs)[0] for m in models.values()]
        torch.testing.assert_close(same[0], same[1])
        steps = {name: partial(train_step, m.train(), torch.optim.Adam(m.parameters(), lr=4e-4), no_amp, inputs, *extra) for name, m in models.items()}
        seconds, _ = median_seconds(steps, max(sizes.reps, 5))
        yield metric(f"{where}_train_speedup_vs_{label}", seconds["then"] / seconds["today"], "x",
                     f"float32 step {seconds['then']:.3f} s at {label}, {seconds['today']:.3f} s today; same logits (checked)")  # fmt: skip


def decoder_like(decoder: Decoder, klass: type[Decoder], encoder_dim: int, cfg: ModelConfig) -> Decoder:
    """A decoder of class `klass` (another revision's) built from the config `decoder` was, holding its weights."""
    twin = klass(decoder.vocab_size, encoder_dim, cfg)
    twin.load_state_dict(decoder.state_dict())
    return twin


BENCHMARKS: dict[str, Callable[[Sizes], Iterator[Metric]]] = {
    "book": bench_book_model,
    "train": bench_train,
    "hard": bench_hard,
    "beam": bench_beam,
    "cache": bench_feature_cache,
    "transformer": bench_transformer,
    "reference": bench_reference,  # sgrvinod's tutorial, with --reference PATH; otherwise one line says it was skipped
    "compile": bench_compile,  # minutes of compiling: with --only compile only
    "baseline": bench_baseline,  # today's step against the decoder of --baseline REV, by default ISSUE_BASELINE
    "gpu": bench_gpu,  # run only where torch sees a CUDA GPU
}


def peak_rss_mb() -> Metric:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return metric("peak_rss_mb", kib / 1024, "MiB", "resource.getrusage peak RSS of the whole run")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a Markdown table")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="run one group of benchmarks")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--reference", type=Path, metavar="PATH", help="a checkout of sgrvinod's tutorial to compare with")
    parser.add_argument("--baseline", metavar="REV", help="a git revision whose captionlib/ decoder to time today's against (default: ISSUE_BASELINE, 6a0df98)")
    args = parser.parse_args(argv)
    groups = {**BENCHMARKS, "reference": partial(bench_reference, path=args.reference), "baseline": partial(bench_baseline, revision=args.baseline)}
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else Sizes()
    optional = {"compile"} | (set() if torch.cuda.is_available() else {"gpu"})  # run only when named with --only
    names = [args.only] if args.only else [n for n in BENCHMARKS if n not in optional]
    if "gpu" in names and not torch.cuda.is_available():
        sys.exit("benchmarks/run.py: --only gpu needs a CUDA GPU, and torch sees none")

    def show(row: Metric) -> None:
        """A JSON line, or a Markdown table row (the table in benchmarks/README.md is this output)."""
        if args.json:
            print(json.dumps(row), flush=True)
            return
        value = row["value"]
        value = (f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}") if isinstance(value, float) else str(value)
        target = f">= {row['target_min']:g}" if "target_min" in row else ""
        print(f"| {row['metric']} | {value} | {row.get('unit', '')} | {target} | {row.get('note', '')} |", flush=True)

    if not args.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'quick' if args.quick else 'full'} sizes\n")
        print("| metric | value | unit | target | note |\n|---|---|---|---|---|")
    for name in names:
        for row in groups[name](sizes):
            show(row)
    show(peak_rss_mb())  # after the benchmarks: it covers every one that ran
    show(metric("torch_threads", torch.get_num_threads(), "threads", "torch CPU threads used by every benchmark"))


if __name__ == "__main__":
    sys.exit(main())
