"""COCO caption metrics (pycocoevalcap): BLEU, METEOR, ROUGE-L, CIDEr, computed next to nltk's BLEU.

Why the two BLEU-4 numbers can differ on the same captions: (1) tokenisation — pycocoevalcap runs
Stanford's PTB tokeniser ("dog's" -> "dog 's", punctuation dropped) while nltk gets captionlib's
("dogs"); (2) pycocoevalcap adds tiny constants to every n-gram precision, so a corpus without a single
matching 4-gram scores about 1e-7 instead of 0. Both take the brevity penalty from the reference length
closest to each hypothesis (ties to the shorter) and clip n-gram counts against all references, so on
captions without punctuation (the shapes world) the two agree.
"""

from __future__ import annotations

import shutil
import sys
from typing import Callable, Sequence

from .vocab import tokenize


def java_available() -> bool:
    """METEOR and the PTB tokeniser run on the Java runtime."""
    return shutil.which("java") is not None


def coco_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], warn: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Corpus scores on a 0-1 scale: coco_bleu1..4, meteor (needs Java), rouge_l, cider. SPICE is skipped."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        raise ValueError("--metrics coco needs pycocoevalcap: pip install 'captionlib[coco]'") from None
    warn = warn or (lambda message: print(f"captionlib: {message}", file=sys.stderr))
    gts = {i: [{"caption": r} for r in refs] for i, refs in enumerate(references)}
    res = {i: [{"caption": h}] for i, h in enumerate(hypotheses)}
    if java_available():
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    else:
        warn("no Java runtime: METEOR skipped, captions tokenised by captionlib instead of the PTB tokeniser")
        gts = {i: [" ".join(tokenize(c["caption"])) for c in caps] for i, caps in gts.items()}
        res = {i: [" ".join(tokenize(c["caption"])) for c in caps] for i, caps in res.items()}
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores |= {f"coco_bleu{n}": float(b) for n, b in enumerate(bleu, start=1)}
    if java_available():
        from pycocoevalcap.meteor.meteor import Meteor

        scores["meteor"] = float(Meteor().compute_score(gts, res)[0])
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    warn("SPICE skipped: it needs Stanford CoreNLP models that are downloaded on first use")
    return scores
