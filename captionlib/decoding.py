"""Turning annotations into captions: greedy decoding and beam search (batched, and one image at a time)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .decoder import Decoder
from .vocab import Vocabulary


@dataclass
class Caption:
    """A decoded caption: word ids (no <start>/<end>), the α map of each word, and its log-probability."""

    tokens: list[int]
    alphas: torch.Tensor  # (len(tokens), P)
    score: float  # Σ log p over the words and, when finished, the <end>
    finished: bool  # False when no <end> came within max_len steps


def _check_beam_size(beam_size: int, vocab_size: int) -> None:
    """Each step ranks 2k candidates (k may end, k continue), so k can be at most half the vocabulary."""
    if not 1 <= beam_size <= vocab_size // 2:
        raise ValueError(f"beam size {beam_size}: must be between 1 and {vocab_size // 2} (half the vocabulary of {vocab_size} words)")


def _ranked(score: float, length: int, length_penalty: float) -> float:
    """Score used to compare finished hypotheses: log p / length^α (α = 0: plain log p)."""
    return score / (length**length_penalty) if length_penalty else score


@torch.no_grad()
def greedy_decode(decoder: Decoder, annotations: torch.Tensor, max_len: int) -> list[Caption]:
    """Pick the most likely word at every step, for a batch of images (B, P, D) at once."""
    B, P, _ = annotations.shape
    if B == 0 or max_len <= 0:  # nothing to decode: empty captions that did not finish, as beam_search returns
        return [Caption([], torch.zeros(0, P), 0.0, False) for _ in range(B)]
    projected = decoder.project(annotations)  # what attention needs of each image, e.g. W_a a (B, P, A)
    state = decoder.init_state(annotations)  # (h, c), (B, n) each, or an empty key/value cache
    words = torch.full((B,), Vocabulary.start_id, dtype=torch.long, device=annotations.device)  # (B,)
    ended = torch.zeros(B, dtype=torch.bool, device=annotations.device)  # (B,) has produced <end>
    chosen, maps, logps = [], [], []
    for _ in range(max_len):
        logits, state, alpha = decoder.step(words, state, annotations, projected)  # (B, V), _, (B, P)
        logp, words = F.log_softmax(logits, dim=1).max(dim=1)  # (B,), (B,)
        chosen.append(words), maps.append(alpha), logps.append(logp)
        ended |= words == Vocabulary.end_id
        if bool(ended.all()):
            break  # every image has produced <end>
    chosen_t, maps_t, logps_t = torch.stack(chosen, 1), torch.stack(maps, 1), torch.stack(logps, 1)  # (B, T) (B, T, P) (B, T)
    captions = []
    for b in range(B):
        ends = (chosen_t[b] == Vocabulary.end_id).nonzero()
        n = int(ends[0]) if len(ends) else chosen_t.size(1)  # words before the first <end>
        finished = len(ends) > 0
        score = float(logps_t[b, : n + 1 if finished else n].sum())
        captions.append(Caption(chosen_t[b, :n].tolist(), maps_t[b, :n].cpu(), score, finished))
    return captions


@torch.no_grad()
def beam_search(
    decoder: Decoder, annotations: torch.Tensor, beam_size: int, max_len: int, length_penalty: float = 0.0
) -> list[Caption]:
    """Beam search of width k for B images at once: the hypotheses of all images advance in one decoder call per step.

    At each step every image keeps its k best continuations (of its k*V candidates) that do not end;
    <end> candidates among its top k are set aside as finished. An image is done once it has k finished
    captions, and leaves the batch; the best by log p / length^length_penalty is returned. An image with no
    finished caption after max_len steps returns its best live hypothesis, marked finished=False.
    """
    B, P, _ = annotations.shape
    k, V, device = beam_size, decoder.vocab_size, annotations.device
    _check_beam_size(k, V)
    if B == 0:
        return []
    projected = decoder.project(annotations)  # e.g. W_a a (B, P, A), once per image
    # The b images still searching are images[searching], each with w hypotheses: row i*w + j of every tensor
    # below is hypothesis j of the i-th of them, and they all share their image's annotations. At t = 0 an
    # image has one hypothesis, <start> (w = 1); from t = 1 on it keeps k (w = k).
    searching = torch.arange(B, device=device)  # (b,)
    width = 1  # w
    state = decoder.init_state(annotations)  # (h, c), (bw, n) each, or an empty key/value cache
    words = torch.full((B,), Vocabulary.start_id, dtype=torch.long, device=device)  # (bw,)
    scores = torch.zeros(B, 1, device=device)  # (b, w) log p of each hypothesis
    history = torch.zeros(B, 0, dtype=torch.long, device=device)  # (bw, t) words so far
    history_alphas = torch.zeros(B, 0, P, device=device)  # (bw, t, P)
    finished: list[list[tuple[float, float, list[int], torch.Tensor]]] = [[] for _ in range(B)]  # by image
    for t in range(max_len):
        b = len(searching)
        logits, state, alpha = decoder.step(words, state, annotations, projected)  # (bw, V), _, (bw, P)
        candidates = F.log_softmax(logits, dim=1).add_(scores.view(b * width, 1)).view(b, width * V)  # (b, wV)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (b, 2k); at most k of them are <end>
        top_beam, top_word = top_index // V, top_index % V  # (b, 2k) each
        is_end = top_word == Vocabulary.end_id  # (b, 2k)
        for i, j in is_end[:, :k].nonzero().tolist():
            image = int(searching[i])
            if len(finished[image]) < k:
                row = i * width + int(top_beam[i, j])
                s = float(top_scores[i, j])
                tokens = history[row].tolist()
                finished[image].append((_ranked(s, len(tokens) + 1, length_penalty), s, tokens, history_alphas[row].cpu()))
        # Images with k finished captions leave the batch; the others keep their k best candidates that
        # continue: non-<end> ones, in score order.
        not_done = [len(finished[int(image)]) < k for image in searching]
        still = torch.tensor(not_done, device=device).nonzero().squeeze(1)  # (b',) positions of those still searching
        if not len(still):
            break
        rank = torch.cumsum(~is_end, dim=1) - 1  # (b, 2k) position among non-<end> candidates
        keep = (~is_end) & (rank < k)  # (b, 2k), exactly k True per row
        beam = top_beam[keep].view(b, k)[still]  # (b', k)
        rows = (still.unsqueeze(1) * width + beam).view(-1)  # (b'k,) parent row of each new hypothesis
        words = top_word[keep].view(b, k)[still].view(-1)  # (b'k,)
        scores = top_scores[keep].view(b, k)[still]  # (b', k)
        history = torch.cat([history[rows], words.unsqueeze(1)], dim=1)  # (b'k, t+1)
        history_alphas = torch.cat([history_alphas[rows], alpha[rows].unsqueeze(1)], dim=1)  # (b'k, t+1, P)
        state = (state[0][rows], state[1][rows])  # (h, c), or the Transformer's key/value cache
        width = k
        if len(still) < b:
            searching, annotations, projected = searching[still], annotations[still], projected[still]
    position = {int(image): i for i, image in enumerate(searching)}  # where the images still searching are
    results = []
    for image in range(B):
        if finished[image]:
            _, s, tokens, maps = max(finished[image], key=lambda f: f[0])
            results.append(Caption(tokens, maps, s, True))
        else:  # nothing ended within max_len (so it never left the batch): the best live hypothesis, flagged unfinished
            i = position[image]
            j = int(scores[i].argmax())
            row = i * width + j
            results.append(Caption(history[row].tolist(), history_alphas[row].cpu(), float(scores[i, j]), False))
    return results


@torch.no_grad()
def beam_search_one_image(
    decoder: Decoder, annotations: torch.Tensor, beam_size: int, max_len: int, length_penalty: float = 0.0
) -> Caption:
    """The plain beam search of most tutorials: one image (P, D), its k beams as one small batch.

    Same rule as beam_search, written with Python lists; kept as the reference that beam_search must
    match exactly, and as the baseline of the batching benchmark.
    """
    k, V, device = beam_size, decoder.vocab_size, annotations.device
    _check_beam_size(k, V)
    annotations = annotations.unsqueeze(0)  # (1, P, D)
    projected = decoder.project(annotations)  # e.g. W_a a (1, P, A)
    state = decoder.init_state(annotations)  # (h, c), (1, n) each, or an empty key/value cache
    beams = [(0.0, [], [])]  # (log p, words, α maps) — a single live hypothesis at t = 0
    finished: list[tuple[float, float, list[int], list[torch.Tensor]]] = []
    for t in range(max_len):
        words = torch.tensor([b[1][-1] if b[1] else Vocabulary.start_id for b in beams], device=device)  # (n_live,): 1, then k
        logits, state, alpha = decoder.step(words, state, annotations, projected)  # (n_live, V), _, (n_live, P)
        logp = F.log_softmax(logits, dim=1)  # (n_live, V)
        candidates = torch.tensor([b[0] for b in beams], device=device).unsqueeze(1) + logp  # (n_live, V)
        top_scores, top_index = candidates.view(-1).topk(2 * k)  # (2k,) each
        new_beams, parents = [], []
        for j, (s, idx) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            parent, word = divmod(idx, V)
            if word == Vocabulary.end_id:
                if j < k and len(finished) < k:
                    tokens = beams[parent][1]
                    finished.append((_ranked(s, len(tokens) + 1, length_penalty), s, tokens, beams[parent][2]))
            elif len(new_beams) < k:
                new_beams.append((s, beams[parent][1] + [word], beams[parent][2] + [alpha[parent]]))
                parents.append(parent)
        beams = new_beams
        state = (state[0][parents], state[1][parents])
        if len(finished) >= k:
            break
    if finished:
        _, s, tokens, maps = max(finished, key=lambda f: f[0])
        return Caption(tokens, _stack(maps, annotations.size(1)), s, True)
    s, tokens, maps = max(beams, key=lambda b: b[0])
    return Caption(tokens, _stack(maps, annotations.size(1)), s, False)


def _stack(maps: list[torch.Tensor], P: int) -> torch.Tensor:
    """List of (P,) α maps -> (T, P), also for an empty caption."""
    return torch.stack(maps).cpu() if maps else torch.zeros(0, P)


def decode(decoder: Decoder, annotations: torch.Tensor, beam_size: int, max_len: int, length_penalty: float = 0.0) -> list[Caption]:
    """Greedy when beam_size == 1, batched beam search otherwise."""
    if beam_size == 1:
        return greedy_decode(decoder, annotations, max_len)
    return beam_search(decoder, annotations, beam_size, max_len, length_penalty)
