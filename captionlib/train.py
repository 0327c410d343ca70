"""Training: Adam, clipping, one-cycle schedule, validation BLEU-4 model selection, resumable checkpoints."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config
from .data import collate_grouped
from .evaluate import evaluate, split_dataset
from .loss import caption_loss
from .model import CaptionModel
from .sources import Split, load_splits
from .vocab import Vocabulary

LAST, BEST = "last.pt", "best.pt"


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


def train_epoch(model, loader, optimizer, scheduler, cfg: Config, progress: bool) -> dict[str, float]:
    """One pass over the training images; returns mean loss terms per caption batch."""
    model.train()
    sums = {"loss": 0.0, "cross_entropy": 0.0, "attention_penalty": 0.0}
    batches = tqdm(loader, leave=False, disable=not progress, desc="train", unit="batch")
    for images, captions, lengths, image_of_caption, _ in batches:
        logits, alphas = model(images, captions, lengths, image_of_caption)  # (N, T, V), (N, T, P)
        terms = caption_loss(logits, captions, lengths, alphas, cfg.train.attention_lambda)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        sums["loss"] += terms.total.item()
        sums["cross_entropy"] += terms.cross_entropy.item()
        sums["attention_penalty"] += terms.attention_penalty.item()
        batches.set_postfix(loss=f"{terms.total.item():.3f}")
    return {k: v / max(len(loader), 1) for k, v in sums.items()}


def _resume(out: Path, cfg: Config, vocab: Vocabulary, model, optimizer, scheduler) -> tuple[int, float, list]:
    """Restore everything from out/last.pt if it exists -> (next epoch, best BLEU-4, history)."""
    path = out / LAST
    if not path.exists():
        return 0, -1.0, []
    state = load_checkpoint(path)
    if state.get("config") != cfg.to_dict():
        raise CheckpointError(f"{path}: was written by a different configuration; use another --out or the same options")
    if state.get("vocab") != vocab.itos:
        raise CheckpointError(f"{path}: its vocabulary ({len(state.get('vocab', []))} words) differs from this data's ({len(vocab)})")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    return state["epoch"] + 1, state["best_bleu4"], state["history"]


def train(
    cfg: Config,
    out_dir: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    splits: dict[str, Split] | None = None,
) -> Path:
    """Train (or resume) the captioner described by cfg; returns the path of the best checkpoint.

    out_dir/last.pt is rewritten after every epoch with all training state, so re-running the same
    command after an interruption continues from the last finished epoch and ends with the same
    weights as an uninterrupted run. out_dir/best.pt holds the model with the best validation BLEU-4.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    splits = splits or load_splits(cfg)
    vocab = Vocabulary.build((c for caps in splits["train"].captions for c in caps), cfg.train.vocab_threshold)
    model = CaptionModel(cfg.model, len(vocab))
    train_set = split_dataset(splits["train"], vocab, cfg.model.image_size)
    steps_per_epoch = math.ceil(len(train_set) / cfg.train.batch_images)
    optimizer, scheduler = build_optimizer(model, cfg, steps_per_epoch)
    start, best, history = _resume(out, cfg, vocab, model, optimizer, scheduler)
    if start >= cfg.train.epochs:
        log(f"{out / LAST}: already trained for {cfg.train.epochs} epochs; best validation BLEU-4 {best:.4f}")
        return out / BEST
    if start:
        log(f"resuming from {out / LAST} at epoch {start + 1}/{cfg.train.epochs}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"{len(train_set)} training images, vocabulary {len(vocab)}, {n_params / 1e6:.2f}M trainable parameters")
    for epoch in range(start, cfg.train.epochs):
        began = time.perf_counter()
        order = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)  # the epoch alone fixes the order
        loader = DataLoader(train_set, cfg.train.batch_images, shuffle=True, generator=order, collate_fn=collate_grouped)
        losses = train_epoch(model, loader, optimizer, scheduler, cfg, progress)
        val = evaluate(model, vocab, splits["val"], cfg.train.val_beam_size, cfg.train.max_caption_len)
        record = {"epoch": epoch + 1, **losses, **{f"val_{k}": v for k, v in val.items()}, "seconds": time.perf_counter() - began}
        history.append(record)
        payload = {"config": cfg.to_dict(), "vocab": vocab.itos, "model": model.state_dict(), "history": history}
        if val["bleu4"] > best:
            best = val["bleu4"]
            save_checkpoint({**payload, "epoch": epoch, "best_bleu4": best}, out / BEST)
        save_checkpoint(
            {
                **payload,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state()},
                "epoch": epoch,
                "best_bleu4": best,
            },
            out / LAST,
        )
        log(
            f"epoch {epoch + 1}/{cfg.train.epochs}  loss {losses['loss']:.3f} (xent {losses['cross_entropy']:.3f}, "
            f"att {losses['attention_penalty']:.2f})  val BLEU-4 {val['bleu4']:.4f}  {record['seconds']:.0f}s"
        )
    return out / BEST
