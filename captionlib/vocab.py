"""Word vocabulary: tokenise, count, threshold, encode and decode captions."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_APOSTROPHES = re.compile(r"['\u2019]")
_NON_WORD_ASCII = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercase, drop apostrophes ("dog's" -> "dogs"), split on anything not a letter, digit or combining mark.

    Letters of every script count ("café", "mädchen"), with the accents and vowel signs that attach to them (Unicode
    category M): the text is NFC-normalised first, so a decomposed "e + ◌́" and a precomposed "é" give the same word.
    """
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFC", text.lower()))
    if text.isascii():  # nearly every English caption: the fast path
        return _NON_WORD_ASCII.sub(" ", text).split()
    return "".join(ch if ch.isalnum() or unicodedata.category(ch)[0] == "M" else " " for ch in text).split()


class Vocabulary:
    """Maps words to ids; ids 0..3 are <pad>, <start>, <end>, <unk>."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary has duplicate words")
        self.itos = list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[str], threshold: int = 1) -> "Vocabulary":
        """Keep words seen at least `threshold` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= threshold), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, caption: str) -> list[int]:
        """Caption text -> [<start>, w1, ..., wn, <end>] ids; unknown words become <unk>."""
        ids = [self.stoi.get(w, self.unk_id) for w in tokenize(caption)]
        return [self.start_id, *ids, self.end_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words, stopping at <end> and skipping <start>/<pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.start_id, self.pad_id):
                continue
            words.append(self.itos[i])
        return words

    def to_json(self) -> str:
        """Serialise as a JSON list of words in id order."""
        return json.dumps(self.itos)

    @classmethod
    def from_json(cls, text: str) -> "Vocabulary":
        """Inverse of to_json."""
        return cls(json.loads(text))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary to a JSON file."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """Read a vocabulary written by save()."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
