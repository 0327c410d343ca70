"""A Transformer decoder over the same annotations (Vaswani et al., 2017; chapter 13): masked self-attention replaces the
LSTM's recurrence, multi-head scaled dot-product cross-attention over the P cells replaces eq. 4's additive attention.

It keeps the LSTM decoder's interface (decoder.Decoder), so training, greedy and beam search, evaluation and the
explorer run it unchanged: `project` prepares the cells once per image, `init_state` and `step` decode one word at a
time with a key/value cache as the state, and `forward` teacher-forces every word of a caption in one parallel pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import ModelConfig
from .decoder import captions_per_image
from .loss import real_words

# Widths at which a Transformer decoder of 1, 2 or 4 layers (ff_dim = 4 d_model) has the parameter count of the book's
# LSTM decoder on the shapes world, within 3% (tests/test_transformer.py); 2 layers of 136 is ModelConfig's default.
MATCHED_WIDTHS = {1: 192, 2: 136, 4: 96}
# The same for 2 layers against the LSTM decoder of width n (model.decoder_dim): the grid's budgets use n = 256 and 128.
WIDTH_FOR_LSTM = {256: 136, 128: 84}

Cache = tuple[torch.Tensor, torch.Tensor]  # self-attention keys and values of the words so far, each (R, layers, h, t, d_head)


def scaled_dot_product_attention(
    q: torch.Tensor,  # (..., T, d_k) queries
    k: torch.Tensor,  # (..., S, d_k) keys
    v: torch.Tensor,  # (..., S, d_v) values
    mask: torch.Tensor | None = None,  # (T, S) bool, False = query t may not look at key s
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(QKᵀ / √d_k) V (Vaswani et al., eq. 1) -> the output (..., T, d_v), the weights (..., T, S)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, S)  QKᵀ / √d_k
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # a masked key gets weight exactly 0
    weights = torch.softmax(scores, dim=-1)  # (..., T, S)  each query's weights sum to 1, like α_t
    return weights @ v, weights  # (..., T, d_v), (..., T, S)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_j = Attention(Q W_j^Q, K W_j^K, V W_j^V)."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.W_q = nn.Linear(d_model, d_model)  # the h heads' W_j^Q side by side
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d_model) -> (B, h, T, d_head): each head sees its own d_head = d_model / h channels."""
        B, T, _ = x.shape
        return x.view(B, T, self.heads, -1).transpose(1, 2)  # (B, h, T, d_head)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K W^K and V W^V of what is attended to: (B, S, d_model) -> two (B, h, S, d_head)."""
        return self.split(self.W_k(source)), self.split(self.W_v(source))

    def forward(
        self,
        x: torch.Tensor,  # (B, T, d_model) the queries' source
        keys: torch.Tensor,  # (B, h, S, d_head), from keys_values
        values: torch.Tensor,  # (B, h, S, d_head)
        mask: torch.Tensor | None = None,  # (T, S) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attended output (B, T, d_model) and every head's weights (B, h, T, S)."""
        out, weights = scaled_dot_product_attention(self.split(self.W_q(x)), keys, values, mask)  # (B, h, T, d_head), (B, h, T, S)
        B, h, T, d_head = out.shape
        return self.W_o(out.transpose(1, 2).reshape(B, T, h * d_head)), weights  # (B, T, d_model), (B, h, T, S)


class DecoderLayer(nn.Module):
    """Pre-norm (Xiong et al., 2020): x += SelfAttention(LN x);  x += CrossAttention(LN x, cells);  x += FFN(LN x)."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_self, self.self_attention = nn.LayerNorm(d_model), MultiHeadAttention(d_model, heads)
        self.norm_cross, self.cross_attention = nn.LayerNorm(d_model), MultiHeadAttention(d_model, heads)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Linear(ff_dim, d_model))  # FFN(x) = max(0, xW₁ + b₁)W₂ + b₂
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,  # (R, T, d_model) the words; R = B*k rows, k per image, image by image
        cells: tuple[torch.Tensor, torch.Tensor],  # the cells' keys and values for this layer, (B, h, P, d_head) each
        past: Cache | None = None,  # this layer's keys and values of the earlier words, (R, h, t, d_head) each
        causal: torch.Tensor | None = None,  # (T, T) bool: word t sees words 1..t (teacher forcing)
    ) -> tuple[torch.Tensor, torch.Tensor, Cache]:
        """-> x (R, T, d_model), the cross-attention weights (R, h, T, P), and the self-attention keys and values so far."""
        y = self.norm_self(x)  # (R, T, d_model)
        keys, values = self.self_attention.keys_values(y)  # (R, h, T, d_head) each
        if past is not None:  # decoding: the earlier words' keys and values, computed at their own steps
            past = past[0].to(keys.dtype), past[1].to(values.dtype)  # an empty float32 cache meets bfloat16 keys under autocast
            keys, values = torch.cat([past[0], keys], dim=2), torch.cat([past[1], values], dim=2)  # (R, h, t + T, d_head)
        attended, _ = self.self_attention(y, keys, values, causal)  # (R, T, d_model)
        x = x + self.dropout(attended)
        # Cross-attention: the k rows of an image are k·T queries of that one image, so its cells are not copied k times.
        R, T, d = x.shape
        B, h, P, _ = cells[0].shape
        if R % B:
            raise ValueError(f"{R} rows of words for {B} images: each image must have the same number of rows")
        attended, weights = self.cross_attention(self.norm_cross(x).reshape(B, -1, d), *cells)  # (B, kT, d), (B, h, kT, P)
        x = x + self.dropout(attended.reshape(R, T, d))
        weights = weights.view(B, h, R // B, T, P).transpose(1, 2).reshape(R, h, T, P)  # (R, h, T, P)
        x = x + self.dropout(self.ff(self.norm_ff(x)))  # (R, T, d_model)
        return x, weights, (keys, values)


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/dim)), PE(pos, 2i+1) = cos(...) (Vaswani et al., §3.5): (...,) -> (..., dim)."""
    rates = torch.exp(torch.arange(0, dim, 2, device=positions.device) * (-math.log(10000.0) / dim))  # (dim/2,)
    angles = positions.float().unsqueeze(-1) * rates  # (..., dim/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., dim) sin and cos interleaved


def grid_encoding(side: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """2-D positions of side × side cells, a row sinusoid then a column one (as DETR; chapter 09's (x, y)) -> (P, dim)."""
    index = torch.arange(side, device=device)  # (side,)
    rows = sinusoid(index, dim // 2).repeat_interleave(side, dim=0)  # (P, dim/2) the same for a whole row
    cols = sinusoid(index, dim // 2).repeat(side, 1)  # (P, dim/2)
    return torch.cat([rows, cols], dim=1)  # (P, dim)


class TransformerDecoder(nn.Module):
    """Pre-norm layers of masked self-attention, cross-attention over the cells and a feed-forward block, then logits."""

    def __init__(self, vocab_size: int, encoder_dim: int, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.vocab_size, self.d_model, self.heads = vocab_size, d, cfg.heads
        self.embedding = nn.Embedding(vocab_size, d)  # E, scaled by √d_model (Vaswani et al., §3.4)
        # Drawn with standard deviation 1/√d_model, so that scaled they start at unit variance, the sinusoids' scale:
        # nn.Embedding's N(0, 1) times √d_model drowned the word positions (12 to 1 at d_model = 136; README). The
        # scaling then only makes Adam's steps on E √d_model times larger relative to E, as in Vaswani et al.
        nn.init.normal_(self.embedding.weight, std=d**-0.5)
        self.cells = nn.Linear(encoder_dim, d)  # the annotations a_i (D) -> d_model
        self.grid_positions = cfg.cell_positions  # add grid_encoding to the cells; without it, cross-attention cannot tell where a cell lies
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)  # pre-norm layers leave the last sum unnormalised
        self.out = nn.Linear(d, vocab_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def embed(self, words: torch.Tensor, start: int) -> torch.Tensor:
        """Word embeddings plus 1-D positions: words (R, T) at positions start .. start+T-1 -> (R, T, d_model)."""
        positions = torch.arange(start, start + words.size(1), device=words.device)  # (T,)
        x = self.embedding(words) * math.sqrt(self.d_model) + sinusoid(positions, self.d_model)  # (R, T, d_model)
        return self.dropout(x)

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """Every layer's cross-attention keys and values of the cells, once per image: (B, P, D) -> (B, layers, 2, h, P, d_head)."""
        B, P, _ = annotations.shape
        cells = self.cells(annotations)  # (B, P, d_model)
        if self.grid_positions:
            side = math.isqrt(P)
            if side * side != P:
                raise ValueError(f"{P} cells are not a square grid: model.cell_positions needs grid_size x grid_size cells")
            cells = cells + grid_encoding(side, self.d_model, annotations.device).to(cells.dtype)  # (B, P, d_model)
        cells = self.dropout(cells)
        return torch.stack([torch.stack(layer.cross_attention.keys_values(cells), dim=1) for layer in self.layers], dim=1)

    def init_state(self, annotations: torch.Tensor) -> Cache:
        """An empty key/value cache: no word decoded yet -> two (B, layers, h, 0, d_head)."""
        B = annotations.size(0)
        empty = annotations.new_zeros(B, len(self.layers), self.heads, 0, self.d_model // self.heads)
        return empty, empty

    def step(
        self,
        prev_words: torch.Tensor,  # (R,) ids of y_{t-1}, R = B*k rows: k per image, image by image
        state: Cache,  # the keys and values of words 1..t-1, (R, layers, h, t-1, d_head) each
        annotations: torch.Tensor,  # (B, P, D), unused: the cells are in `projected`
        projected: torch.Tensor,  # (B, layers, 2, h, P, d_head) from project()
    ) -> tuple[torch.Tensor, Cache, torch.Tensor]:
        """One word with the cache: only the new word's query, key and value are computed -> logits (R, V), cache, α_t (R, P)."""
        x = self.embed(prev_words.unsqueeze(1), start=state[0].size(3))  # (R, 1, d_model)
        keys, values, maps = [], [], []
        for i, layer in enumerate(self.layers):
            past = (state[0][:, i], state[1][:, i])  # this layer's keys and values of words 1..t-1; no mask: all are past
            x, weights, (layer_keys, layer_values) = layer(x, projected[:, i].unbind(1), past)  # (R, 1, d_model), (R, h, 1, P)
            keys.append(layer_keys), values.append(layer_values), maps.append(weights)
        logits = self.out(self.norm(x)).squeeze(1)  # (R, V)
        alpha = torch.stack(maps, dim=1).mean(dim=(1, 2)).squeeze(1)  # (R, P) over layers and heads
        return logits, (torch.stack(keys, dim=1), torch.stack(values, dim=1)), alpha

    def attention_maps(
        self,
        annotations: torch.Tensor,  # (B, P, D)
        captions: torch.Tensor,  # (N, L) ids: <start> w1 .. wk <end> <pad>...
        lengths: torch.Tensor,  # (N,)
        image_of_caption: torch.Tensor | None = None,  # (N,)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing in one pass -> logits (N, T, V) and every layer's and head's cross-attention (N, layers, h, T, P)."""
        annotations, k = captions_per_image(annotations, captions, image_of_caption)  # (B, P, D), k captions per image
        T = int(lengths.max()) - 1  # predictions of the longest caption
        x = self.embed(captions[:, :T], start=0)  # (N, T, d_model); embedded before the cells: dropout's draws keep their order
        x, maps = self.run_layers(x, self.project(annotations))  # (N, T, d_model), (N, layers, h, T, P)
        return self.out(self.norm(x)), maps  # (N, T, V), (N, layers, h, T, P)

    def run_layers(
        self,
        x: torch.Tensor,  # (N, T, d_model) embedded words y_0 .. y_{T-1}, k rows per image, image by image
        projected: torch.Tensor,  # (B, layers, 2, h, P, d_head) from project()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every position at once, causally masked -> the last layer's outputs (N, T, d_model), before the final norm, and
        every layer's and head's cross-attention (N, layers, h, T, P)."""
        T = x.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T) word t sees words 1..t
        maps = []
        for i, layer in enumerate(self.layers):
            x, weights, _ = layer(x, projected[:, i].unbind(1), causal=causal)  # (N, T, d_model), (N, h, T, P)
            maps.append(weights)
        return x, torch.stack(maps, dim=1)  # (N, T, d_model), (N, layers, h, T, P)

    def forward(
        self,
        annotations: torch.Tensor,  # (B, P, D)
        captions: torch.Tensor,  # (N, L)
        lengths: torch.Tensor,  # (N,)
        image_of_caption: torch.Tensor | None = None,  # (N,)
        sample_locations: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Teacher forcing, as Decoder.forward: logits (N, T, V) and α (N, T, P), both zero past each caption's end."""
        if sample_locations:
            raise ValueError("sample_locations=True samples hard attention's locations; the Transformer decoder's attention is soft")
        logits, maps = self.attention_maps(annotations, captions, lengths, image_of_caption)  # (N, T, V), (N, layers, h, T, P)
        live = real_words(lengths, logits.size(1)).unsqueeze(2)  # (N, T, 1)
        return logits * live, maps.mean(dim=(1, 2)) * live, None  # (N, T, V), (N, T, P)


class RecomputingDecoder(nn.Module):
    """The decoder without a key/value cache, its state the words so far: the reference the cache is tested against."""

    # Each step runs the whole prefix again and keeps the last position: what TransformerDecoder.step computes
    # (tests/test_transformer.py), t times over; greedy and beam search run it unchanged, and the benchmark times it.

    def __init__(self, decoder: TransformerDecoder):
        super().__init__()
        self.decoder, self.vocab_size = decoder, decoder.vocab_size

    def project(self, annotations: torch.Tensor) -> torch.Tensor:
        """The decoder's own: every layer's keys and values of the cells, (B, layers, 2, h, P, d_head)."""
        return self.decoder.project(annotations)  # (B, layers, 2, h, P, d_head)

    def init_state(self, annotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """No word yet: (B, 0) ids, and an unused second tensor (beam search reorders the state as a pair)."""
        empty = torch.zeros(annotations.size(0), 0, dtype=torch.long, device=annotations.device)
        return empty, empty

    def step(self, prev_words: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], annotations: torch.Tensor, projected: torch.Tensor):
        """The whole prefix y_0 .. y_{t-1} through every layer, causally masked -> logits (R, V), the prefix, α_t (R, P)."""
        words = torch.cat([state[0], prev_words.unsqueeze(1)], dim=1)  # (R, t)
        x = self.decoder.embed(words, start=0)  # (R, t, d_model)
        x, maps = self.decoder.run_layers(x, projected)  # (R, t, d_model), (R, layers, h, t, P)
        logits = self.decoder.out(self.decoder.norm(x[:, -1]))  # (R, V) the newest word's only
        return logits, (words, state[1]), maps[..., -1, :].mean(dim=(1, 2))  # (R, V), _, (R, P)
