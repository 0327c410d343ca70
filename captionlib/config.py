"""Configuration dataclasses: one place for every size, rate and switch."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

RECIPES = Path(__file__).parent / "recipes"  # named configs shipped with the package, e.g. flickr8k_kaggle


@dataclass
class ShapesConfig:
    """The synthetic shapes world: how many images, how large, which seed."""

    image_size: int = 64
    n_train: int = 6000
    n_val: int = 300
    n_test: int = 1000
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0


@dataclass
class ModelConfig:
    """Sizes of the encoder, attention and decoder (the paper: VGG annotations of D = 512, m = n = 512)."""

    encoder: str = "shapes_cnn"  # "shapes_cnn" | "resnet18/50/101/152" | "mobilenet_v2"
    pretrained: bool = False  # load ImageNet weights through torchvision's weights API
    fine_tune_blocks: int = 0  # number of last encoder blocks to train (0 = frozen)
    grid_size: int = 8  # annotation grid is grid_size x grid_size (paper: 14)
    image_size: int = 64  # images are resized to image_size x image_size
    embed_dim: int = 64  # m in the paper
    attention_dim: int = 64
    decoder_dim: int = 256  # n in the paper
    dropout: float = 0.3
    encoder_channels: int = 128  # D for the shapes CNN (ResNet-50 gives 2048)


@dataclass
class TrainConfig:
    """Optimisation, schedule, model selection and decoding used for validation."""

    epochs: int = 6
    batch_images: int = 48  # each image brings all of its captions into the batch
    lr: float = 4e-3
    encoder_lr: float = 1e-4  # for fine-tuned blocks of a pretrained encoder
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    attention_lambda: float = 0.0  # λ of the doubly stochastic penalty (paper eq. 14)
    vocab_threshold: int = 1  # minimum word count to enter the vocabulary
    max_caption_len: int = 24  # decoding limit, in words
    seed: int = 0
    val_beam_size: int = 1  # 1 = greedy decoding for per-epoch validation BLEU
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    amp: bool = True  # float16 autocast + gradient scaling, on GPU only
    feature_cache: bool = True  # with a frozen encoder, encode each training image once (float16 memmap)
    num_workers: int = 0  # DataLoader worker processes (decoding JPEGs of real data sets)


@dataclass
class Config:
    """Everything a run needs; saved inside every checkpoint."""

    data: str = "shapes"  # "shapes" or a path to a data set in a supported layout
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON- and weights_only-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Inverse of to_dict; unknown keys are an error so typos are caught."""
        sections = {"shapes": ShapesConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs = {}
        for key, value in d.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key == "data":
                kwargs[key] = value
            else:
                raise ValueError(f"config: unknown field {key!r}")
        return cls(**kwargs)


# Where a run goes and how fast, not what it learns: a run may resume with other values of these.
RUNTIME_FIELDS = frozenset({"train.device", "train.num_workers"})


def changed_fields(saved: dict, current: dict) -> list[tuple[str, object, object]]:
    """(dotted name, saved value, current value) of every field two Config.to_dict() results disagree on."""
    changes = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [(f"{key}.{name}", a, b) for name, a, b in changed_fields(old, new)]
        elif old != new:
            changes.append((key, old, new))
    return changes


def _build(klass, values: dict, section: str):
    """Build one section dataclass, naming the field when a key is unknown."""
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"config: unknown field {section}.{sorted(unknown)[0]}")
    return klass(**values)


def recipe_names() -> list[str]:
    """Names of the configs shipped in captionlib/recipes."""
    return sorted(p.stem for p in RECIPES.glob("*.json"))


def load_config(name_or_path: str) -> Config:
    """A JSON config file, or the name of a shipped recipe ('flickr8k_kaggle'); fields not given keep their defaults."""
    path = Path(name_or_path)
    if not path.is_file() and name_or_path in recipe_names():
        path = RECIPES / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{name_or_path}: no such config file or recipe (recipes: {', '.join(recipe_names())})")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    try:
        return Config.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
