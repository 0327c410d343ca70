"""The field's reference tutorial, sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning, loaded from a snapshot on disk.

benchmarks/run.py --reference PATH times its decoder (models.py) and its beam search (caption.py) beside captionlib's,
at the same sizes, in the same process. Its files are not copied into this repository (train_step below restates the
few lines of its train() that a step runs); PATH is a checkout of it, and caption.py needs scikit-image, SciPy and
matplotlib (the `book` extra), e.g.

    git clone https://github.com/sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning /tmp/sgrvinod
    python benchmarks/run.py --only reference --reference /tmp/sgrvinod
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn.utils.rnn import pack_padded_sequence

# caption.py on a torch newer than 1.4: `/` on two integer tensors became true division, so the beam's parent indices
# are floats and indexing fails (the repository's issue #175); `//` is the fix its users apply. The one change made.
INTEGER_DIVISION = ("prev_word_inds = top_k_words / vocab_size", "prev_word_inds = top_k_words // vocab_size")


def load_module(name: str, path: Path, fix: tuple[str, str] | None = None) -> types.ModuleType:
    """Import one file of the snapshot as a module named `name`, with at most one documented line replaced."""
    source = path.read_text(encoding="utf-8")
    if fix is not None:
        if source.count(fix[0]) != 1:
            raise ValueError(f"{path}: expected the line {fix[0]!r} once; is this a snapshot of sgrvinod's tutorial?")
        source = source.replace(*fix)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def load(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """The snapshot's models.py and caption.py -> (models, caption). caption.py imports scipy.misc's imread and imresize,
    which SciPy removed in 1.3: a stand-in module answers that import, and image_reader supplies both afterwards."""
    root = Path(root)
    for name in ("models.py", "caption.py"):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name}: not found; --reference takes a checkout of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning")
    models = load_module("sgrvinod_models", root / "models.py")
    stand_in = types.ModuleType("scipy.misc")  # imread and imresize are replaced by image_reader before any call
    stand_in.imread = stand_in.imresize = None
    saved = sys.modules.get("scipy.misc")
    sys.modules["scipy.misc"] = stand_in
    try:
        caption = load_module("sgrvinod_caption", root / "caption.py", INTEGER_DIVISION)
    finally:
        if saved is None:
            del sys.modules["scipy.misc"]
        else:
            sys.modules["scipy.misc"] = saved
    models.device = caption.device = torch.device("cpu")  # both pick CUDA where there is one; the benchmark is the CPU's
    return models, caption


class FixedEncoder(torch.nn.Module):
    """Stands in for the ResNet encoder that caption_image_beam_search calls: returns the annotations it is given."""

    def __init__(self):
        super().__init__()
        self.annotations: torch.Tensor | None = None  # (P, D) of the image being captioned

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) -> (1, G, G, D), the grid layout models.Encoder returns."""
        side = int(self.annotations.size(0) ** 0.5)
        return self.annotations.view(1, side, side, -1)  # (1, G, G, D)


def image_reader(caption: types.ModuleType, seed: int = 0) -> None:
    """Give caption.py a fixed 256 x 256 picture for imread and PIL's resize for imresize. Its search still normalises
    the picture, about a millisecond an image, which is timed with it."""
    picture = np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    caption.imread = lambda path: picture
    caption.imresize = lambda image, size: np.asarray(Image.fromarray(image).resize(size))


def train_step(decoder, optimizer, annotations, captions, lengths, alpha_c: float = 1.0, grad_clip: float = 5.0) -> None:
    """One step of the tutorial's train() (train.py), the encoder's output given: its forward, packed cross-entropy,
    doubly stochastic term, element-wise gradient clamp (utils.clip_gradient) and Adam."""
    side = int(annotations.size(1) ** 0.5)
    encoder_out = annotations.view(annotations.size(0), side, side, -1)  # (N, G, G, D)
    scores, caps_sorted, decode_lengths, alphas, _ = decoder(encoder_out, captions, lengths.unsqueeze(1))
    scores = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
    targets = pack_padded_sequence(caps_sorted[:, 1:], decode_lengths, batch_first=True).data
    loss = torch.nn.functional.cross_entropy(scores, targets) + alpha_c * ((1.0 - alphas.sum(dim=1)) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad.data.clamp_(-grad_clip, grad_clip)
    optimizer.step()


if __name__ == "__main__":  # python benchmarks/reference.py PATH: check that a snapshot loads
    models, caption = load(Path(sys.argv[1]))
    print(f"loaded {models.__file__} and {caption.__file__}")
