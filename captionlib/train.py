"""Training: Adam, clipping, one-cycle schedule, validation BLEU-4 model selection, resumable checkpoints."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import RUNTIME_FIELDS, Config, changed_fields
from .data import collate_grouped
from .distributed import Topology, barrier, global_sum, init_distributed
from .evaluate import evaluate, split_dataset
from .features import feature_cache
from .files import cache_dir
from .hard_attention import HardAttention, reinforce_terms
from .loss import caption_loss
from .model import CaptionModel
from .sources import Split, load_splits
from .vocab import Vocabulary

LAST, BEST = "last.pt", "best.pt"


class NonFiniteError(FloatingPointError):
    """Training met a loss, gradient or weight that is not finite and stopped; str() is one line, the same on every process."""


def build_optimizer(model: CaptionModel, cfg: Config, steps_per_epoch: int):
    """Adam with a slower rate for fine-tuned pretrained blocks, under a one-cycle schedule."""
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    slow = cfg.model.pretrained and bool(encoder_params)
    groups = [{"params": list(model.decoder.parameters()), "lr": cfg.train.lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": cfg.train.encoder_lr if slow else cfg.train.lr})
    optimizer = torch.optim.Adam(groups, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=cfg.train.epochs * steps_per_epoch,
        pct_start=0.2,
    )
    return optimizer, scheduler


def cpu_float32_forced() -> bool:
    """$CAPTIONLIB_FLOAT32=1: train in float32 on any CPU, as most laptops do (no native bfloat16); `make ... FLOAT32=1`."""
    value = os.environ.get("CAPTIONLIB_FLOAT32", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"CAPTIONLIB_FLOAT32 = {value!r}: must be 1 (train in float32 on the CPU) or 0 / unset")
    return value == "1"


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """train.amp: float16 on a GPU (with gradient scaling), bfloat16 on a CPU with native bfloat16 arithmetic, else None."""
    if not cfg.train.amp:
        return None
    if device.type == "cuda":
        return torch.float16
    # Elsewhere bfloat16 is emulated, and slower. The check is torch's private helper: a torch without it trains in float32.
    if device.type == "cpu" and not cpu_float32_forced() and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return torch.bfloat16
    return None


def non_finite_terms(step: torch.Tensor) -> str:
    """Which of the (3,) global loss, cross-entropy and attention penalty went bad, with their values."""
    loss, cross_entropy, penalty = step.tolist()
    named = [f"the {name} is {value}" for name, value in (("cross-entropy", cross_entropy), ("attention penalty", penalty)) if not math.isfinite(value)]
    return " and ".join(named) or f"the loss is {loss} (cross-entropy {cross_entropy:.4g}, attention penalty {penalty:.4g})"


def non_finite_weight(model: torch.nn.Module) -> str | None:
    """The name of the model's first parameter or buffer that is not finite, or None when all are."""
    floats = {name: t for name, t in model.state_dict().items() if t.is_floating_point()}
    finite = torch.stack([t.isfinite().all() for t in floats.values()]).cpu()  # (K,) one device sync for all
    return None if bool(finite.all()) else list(floats)[int((~finite).nonzero()[0])]


def train_epoch(
    model, loader, optimizer, scheduler, scaler, cfg: Config, topo: Topology, progress: bool, epoch: int = 0,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """One pass over this process's share of the training images; returns global mean loss terms per batch.

    Each process weights its mean losses by its share of the global tokens and captions, so that the
    gradient DDP averages equals the gradient of one process holding the whole global batch. A loss term
    or a gradient that is not finite raises NonFiniteError before the optimiser step, on every process at once.
    """
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)  # loss, cross-entropy, attention penalty
    dtype = autocast_dtype(cfg, topo.device)  # float16, bfloat16 or None (float32 throughout)
    attention = getattr(getattr(model, "module", model).decoder, "attention", None)  # DDP wraps the model; a Transformer has none
    hard = isinstance(attention, HardAttention)
    # Hard attention samples locations on a minibatch with probability hard_sample_p (§4.1), one draw per minibatch as
    # in capgen.py; seeded by the epoch alone, so every process and every resumed run draws the same.
    coins = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + epoch)
    # The bar repaints itself; into a log file (make, CI) that is one line of thousands of characters per epoch, so the
    # bar is drawn on a terminal only, and elsewhere train()'s one line per epoch carries the same figures.
    bar = progress and topo.is_main and sys.stderr.isatty()
    batches = tqdm(loader, leave=False, disable=not bar, desc="train", unit="batch", file=sys.stderr)
    for index, (inputs, captions, lengths, image_of_caption, _) in enumerate(batches):
        where = f"epoch {epoch + 1}, step {index + 1}/{len(loader)}"
        inputs, captions, lengths, image_of_caption = (t.to(topo.device) for t in (inputs, captions, lengths, image_of_caption))
        sample = hard and bool(torch.rand((), generator=coins) < cfg.train.hard_sample_p)
        with torch.autocast(topo.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            logits, alphas, locations = model(inputs, captions, lengths, image_of_caption, sample_locations=sample)  # (N, T, V), (N, T, P), (N, T)
        terms = caption_loss(logits.float(), captions, lengths, alphas.float(), cfg.train.attention_lambda)
        counts = torch.tensor([float((lengths - 1).sum()), float(len(lengths))], dtype=torch.float64)  # tokens, captions
        share = (counts / global_sum(counts)).to(topo.device, torch.float32)  # (2,) this process's share
        cross_entropy, penalty = terms.cross_entropy * share[0], terms.attention_penalty * share[1]
        loss = cross_entropy + cfg.train.attention_lambda * penalty  # this process's part of the global mean
        # Summed before backward: a NaN or inf on any process makes the sum non-finite on all of them, so every
        # process stops here, at the same step, and none is left waiting in DDP's gradient all-reduce.
        step = global_sum(torch.stack([loss, cross_entropy, penalty]).detach().double().cpu())  # (3,) global means
        if not bool(step.isfinite().all()):
            raise NonFiniteError(f"{where}: {non_finite_terms(step)}")
        objective = loss
        if hard:  # λ_r times the score-function surrogate, minus λ_e times the entropy of α, per word like the loss
            surrogate, entropy = reinforce_terms(logits.float(), captions, lengths, alphas.float(), locations, attention.baseline)
            objective = loss + (cfg.train.reinforce_weight * surrogate - cfg.train.entropy_weight * entropy) * share[0]  # §4.1's final learning rule
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective * topo.world_size).backward()  # DDP divides the summed gradients by world_size
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        if not scaler.is_enabled() and not bool(norm.isfinite()):  # float16 AMP skips such steps itself; DDP gave all the same gradients
            raise NonFiniteError(f"{where}: the gradient is not finite (norm {float(norm)}) though the loss, {step[0].item():.4g}, is")
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if sample:  # b <- 0.9 b + 0.1 (per-word NLL), after the step: the baseline lags one minibatch, as in capgen.py
            attention.baseline.mul_(cfg.train.baseline_decay).add_((1 - cfg.train.baseline_decay) * step[1].item())
        sums += step
        if on_step is not None:  # e.g. chapter 05, which checks its hand-written loop against these losses
            on_step(dict(zip(("loss", "cross_entropy", "attention_penalty"), step.tolist())))
        batches.set_postfix(loss=f"{step[0].item():.3f}")
    means = (sums / max(len(loader), 1)).tolist()
    return dict(zip(("loss", "cross_entropy", "attention_penalty"), means))


def _resume(out: Path, cfg: Config, vocab: Vocabulary, model, optimizer, scheduler, scaler) -> tuple[int, float, list]:
    """Restore everything from out/last.pt if it exists -> (next epoch, best BLEU-4, history).

    The run must have the same configuration, except RUNTIME_FIELDS: an interrupted run may go on with more
    DataLoader workers, or on a GPU after a CPU.
    """
    path = out / LAST
    if not path.exists():
        return 0, -1.0, []
    state = load_checkpoint(path)
    missing = [key for key in ("config", "vocab", "model", "optimizer", "scheduler", "epoch", "best_bleu4", "history") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a resumable last.pt (no {missing[0]!r} entry); use another --out")
    changes = [c for c in changed_fields(state.get("config", {}), cfg.to_dict()) if c[0] not in RUNTIME_FIELDS]
    if changes:
        said = "; ".join(f"{name} = {old!r} there, {new!r} here" for name, old, new in changes[:3])
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise CheckpointError(f"{path}: was written by a different configuration ({said}{more}); use another --out or the same options")
    if state.get("vocab") != vocab.itos:
        raise CheckpointError(f"{path}: its vocabulary ({len(state.get('vocab', []))} words) differs from this data's ({len(vocab)})")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):  # empty unless written under float16, the one precision that scales the loss
        scaler.load_state_dict(state["scaler"])  # the loss scale AMP had reached, not 65536 again
    return state["epoch"] + 1, state["best_bleu4"], state["history"]


def train(
    cfg: Config,
    out_dir: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    splits: dict[str, Split] | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> Path:
    """Train (or resume) the captioner described by cfg; returns the path of the best checkpoint.

    out_dir/last.pt is rewritten after every epoch with all training state, so re-running the same
    command after an interruption continues from the last finished epoch and ends with the same
    weights as an uninterrupted run (bit for bit on a CPU; on a GPU, atomic adds in backward make every run,
    resumed or not, differ in the last bits). No RNG state needs saving: each epoch seeds its data order and
    dropout from (seed, epoch, rank). out_dir/best.pt holds the model train.select_on picks: the last epoch's, or the
    one with the best validation BLEU-4.
    Under torchrun every process trains its share of each batch (DistributedDataParallel, gloo on CPU,
    nccl on GPU) and rank 0 alone logs and writes checkpoints. on_step, if given, is called after every optimiser
    step with that step's global {"loss", "cross_entropy", "attention_penalty"} (floats), on every process.
    """
    out = Path(out_dir)
    topo = init_distributed(cfg.train.device)
    if not topo.is_main:
        log = lambda _: None  # noqa: E731  rank 0 alone logs and writes checkpoints
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    splits = splits or load_splits(cfg)
    vocab = Vocabulary.build((c for caps in splits["train"].captions for c in caps), cfg.train.vocab_threshold)
    model = CaptionModel(cfg.model, len(vocab)).to(topo.device)
    if topo.world_size > 1 and topo.device.type == "cuda":
        # BatchNorm layers that learn (the shapes CNN, fine-tuned blocks) then normalise over the global batch, as
        # one process would. SyncBatchNorm needs CUDA: under gloo on the CPU each process keeps its own statistics.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_set = split_dataset(splits["train"], vocab, cfg.model.image_size)
    if cfg.train.feature_cache and model.encoder.frozen:

        def cached(checksum: bool):
            root, sizes = cache_dir() / "features", (cfg.model.image_size, cfg.model.grid_size)
            return feature_cache(model.encoder, train_set, root, *sizes, cfg.train.num_workers, checksum=checksum, log=log)

        error = None
        if topo.is_main:  # rank 0 checks the cache (rebuilding it if damaged) or builds it while the others wait
            try:
                cache = cached(checksum=True)
            except Exception as e:  # noqa: BLE001  re-raised below, once the other processes know to stop too
                error = e
        if global_sum(torch.tensor([float(error is not None)])).item():  # a barrier that also says whether rank 0 failed
            raise error or ValueError("feature cache: not built; rank 0 stopped and says why")
        train_set = cache if topo.is_main else cached(checksum=False)  # rank 0 has read it whole: a size check will do
    per_process = cfg.train.batch_images // topo.world_size
    if per_process * topo.world_size != cfg.train.batch_images:
        raise ValueError(f"train.batch_images={cfg.train.batch_images} does not split evenly over {topo.world_size} processes")
    # One sampler for 1 or many processes: the same seeded permutation, rank r taking every world_size-th image,
    # so the union of the processes' batches at step k is exactly the single-process batch k. (When the image count
    # is not a multiple of world_size, the sampler first repeats a few images to even the shares out; logged below.)
    sampler = DistributedSampler(train_set, topo.world_size, topo.rank, shuffle=True, seed=cfg.train.seed)
    loader = DataLoader(train_set, per_process, sampler=sampler, collate_fn=collate_grouped, num_workers=cfg.train.num_workers)
    optimizer, scheduler = build_optimizer(model, cfg, len(loader))
    scaler = torch.amp.GradScaler(topo.device.type, enabled=autocast_dtype(cfg, topo.device) is torch.float16)  # bfloat16 needs none
    start, best, history = _resume(out, cfg, vocab, model, optimizer, scheduler, scaler)
    if start >= cfg.train.epochs:
        log(f"{out / LAST}: already trained for {cfg.train.epochs} epochs; best validation BLEU-4 {best:.4f}")
        return out / BEST
    if start:
        log(f"resuming from {out / LAST} at epoch {start + 1}/{cfg.train.epochs}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"{len(train_set)} training images, vocabulary {len(vocab)}, {n_params / 1e6:.2f}M trainable parameters, "
        f"{topo.world_size} process(es) on {topo.device.type}"
    )
    if len(train_set) % topo.world_size:
        repeats = topo.world_size - len(train_set) % topo.world_size
        log(f"{len(train_set)} images do not split evenly over {topo.world_size} processes: each epoch repeats {repeats} of them")
    trained = DistributedDataParallel(model) if topo.world_size > 1 else model

    def untouched(epoch: int) -> str:
        """What a stop during `epoch` leaves behind: the checkpoints of the epoch before, as they were, or nothing."""
        return f"{out / LAST} and {BEST} are left as epoch {epoch} wrote them" if epoch else f"no checkpoint was written to {out}"

    for epoch in range(start, cfg.train.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)  # the epoch alone fixes the order, so a resumed run sees the same batches
        torch.manual_seed(cfg.train.seed * 1_000_003 + epoch * 1_009 + topo.rank)  # and the dropout masks, per process
        try:
            losses = train_epoch(trained, loader, optimizer, scheduler, scaler, cfg, topo, progress, epoch, on_step)
        except NonFiniteError as e:
            raise NonFiniteError(f"{e}; stopped before updating the weights, {untouched(epoch)}") from None
        val = evaluate(model, vocab, splits["val"], cfg.train.val_beam_size, cfg.train.max_caption_len, num_workers=cfg.train.num_workers, probe=False)
        record = {"epoch": epoch + 1, **losses, **{f"val_{k}": v for k, v in val.items()}, "seconds": time.perf_counter() - began}
        history.append(record)
        bad = non_finite_weight(model)  # the last line of defence: no checkpoint ever holds a NaN or an inf
        if global_sum(torch.tensor([float(bad is not None)])).item():  # every process learns it, so none waits below
            said = bad or "a weight on another process"
            raise NonFiniteError(f"epoch {epoch + 1}: {said} is not finite after training; stopped before writing, {untouched(epoch)}")
        if topo.is_main:
            payload = {"config": cfg.to_dict(), "vocab": vocab.itos, "model": model.state_dict(), "history": history}
            if val["bleu4"] > best or cfg.train.select_on == "last":
                save_checkpoint({**payload, "epoch": epoch, "best_bleu4": val["bleu4"]}, out / BEST)
            save_checkpoint(
                {
                    **payload,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "best_bleu4": max(best, val["bleu4"]),
                },
                out / LAST,
            )
        best = max(best, val["bleu4"])
        barrier()  # no process starts the next epoch before rank 0 has written this one
        log(
            f"epoch {epoch + 1}/{cfg.train.epochs}  loss {losses['loss']:.3f} (xent {losses['cross_entropy']:.3f}, "
            f"att {losses['attention_penalty']:.2f})  val BLEU-4 {val['bleu4']:.4f}  {record['seconds']:.0f}s"
        )
    return out / BEST
