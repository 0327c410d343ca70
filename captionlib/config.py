"""Configuration dataclasses: one place for every size, rate and switch."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

RECIPES = Path(__file__).parent / "recipes"  # named configs shipped with the package, e.g. flickr8k_kaggle
DECODE_AT = ("expected", "argmax")  # how a hard-attention model reads the image when it decodes


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
    relation_first: bool = False  # "a A above a B" instead of "a A and a B below it" (chapter 09 measures both)
    mark_leftwards: bool = True  # open the right-to-left caption with "leftwards :" (chapter 09: greedy's first object)

    def __post_init__(self):
        _check_section(self, "shapes")
        if self.min_objects > self.max_objects:
            raise ValueError(f"config: shapes.min_objects = {self.min_objects} is above shapes.max_objects = {self.max_objects}")


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
    cell_positions: bool = False  # append each cell's (x, y) to its annotation: D + 2 (not in the paper; chapter 09)
    attention: str = "soft"  # "soft" (§4.2), "hard" (§4.1, sampled locations) or "none" (the mean annotation, no α)
    beta_gate: bool = True  # the gate β_t on the context (§4.2.1)
    deep_output: bool = True  # the deep output layer, eq. 7; off: the logits are a linear map of h_t
    # "lstm": the paper's decoder (attention, beta_gate, deep_output, decoder_dim, attention_dim apply); "transformer":
    # a Transformer decoder (chapter 13) of the fields below, whose cross-attention is its (soft) attention
    decoder: str = "lstm"
    # Sized to the LSTM decoder's parameters (618K on the shapes world; tests/test_transformer.py): 2 layers of 136 have
    # 1.2% more, 1 layer of 192 2.5% more, 4 of 96 0.1% fewer (ff_dim = 4 d_model, as in Vaswani et al.).
    layers: int = 2  # transformer: decoder layers
    heads: int = 4  # transformer: attention heads per layer; d_model must divide by it
    d_model: int = 136  # transformer: the width of every layer
    ff_dim: int = 544  # transformer: the feed-forward block's hidden width

    def __post_init__(self):
        _check_section(self, "model")
        if self.decoder == "transformer" and self.attention != "soft":
            raise ValueError(f"config: model.attention = {self.attention!r}: the transformer decoder's cross-attention is soft; set model.attention to soft")
        if self.d_model % self.heads or self.d_model % 4:  # sines and cosines of word positions, rows and columns
            raise ValueError(f"config: model.d_model = {self.d_model}: must be a multiple of 4 and of model.heads = {self.heads}")


@dataclass
class TrainConfig:
    """Optimisation, schedule, model selection and decoding used for validation."""

    epochs: int = 10  # at 6 the shapes model names objects well but has not learned relations, at 9 not reliably (chapter 09)
    batch_images: int = 48  # each image brings all of its captions into the batch
    lr: float = 6e-3  # at 4e-3, 10 epochs learned the vertical relations on one CPU and not on another (chapter 09)
    encoder_lr: float = 1e-4  # for fine-tuned blocks of a pretrained encoder
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    attention_lambda: float = 0.0  # λ of the doubly stochastic penalty (paper eq. 14)
    # Hard attention only (paper §4.1's final learning rule, unnumbered, and the authors' capgen.py):
    hard_sample_p: float = 0.5  # chance that a minibatch samples locations; otherwise it uses the expected context
    # λ_r on the score-function term. 1 makes it an unbiased gradient of the loss, but measured on the shapes world
    # (6000 images, 6 epochs, batch 24, one seed each) its noise left the model hallucinating 48% of its objects,
    # against 2.4% at 0.1, the authors' own 1/10 (capgen.py).
    reinforce_weight: float = 0.1
    baseline_decay: float = 0.9  # b <- decay * b + (1 - decay) * mean per-word NLL of the sampled minibatch
    entropy_weight: float = 0.002  # λ_e on the mean entropy H[α_t] per word (capgen.py: alpha_entropy_c)
    vocab_threshold: int = 1  # minimum word count to enter the vocabulary
    max_caption_len: int = 24  # decoding limit, in words
    seed: int = 0
    val_beam_size: int = 1  # 1 = greedy decoding for per-epoch validation BLEU
    # Which epoch best.pt keeps: "bleu4", the highest validation BLEU-4 (the paper's early stopping), or "last". On the
    # shapes world BLEU-4 peaks where greedy decoding lists the objects, often before the relations are learned (chapter 09).
    select_on: str = "last"
    device: str = "auto"  # "auto" (GPU when present), "cpu" or "cuda"
    amp: bool = True  # autocast: float16 + gradient scaling on a GPU, bfloat16 on a CPU that has it natively (train.autocast_dtype)
    feature_cache: bool = True  # with a frozen encoder, encode each training image once (float16 memmap)
    num_workers: int = 0  # DataLoader worker processes (decoding JPEGs of real data sets)

    def __post_init__(self):
        _check_section(self, "train")


@dataclass
class Config:
    """Everything a run needs; saved inside every checkpoint."""

    data: str = "shapes"  # "shapes" or a path to a data set in a supported layout
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    # The book's shapes model appends cell positions, which the paper's annotations lack (chapter 09).
    model: ModelConfig = field(default_factory=lambda: ModelConfig(cell_positions=True))
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON- and weights_only-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Inverse of to_dict, checking every value (see LIMITS); unknown keys are an error so typos are caught."""
        if not isinstance(d, dict):
            raise ValueError(f"config: expected an object of sections, got {type(d).__name__}")
        sections = {"shapes": ShapesConfig, "model": ModelConfig, "train": TrainConfig}
        kwargs = {}
        for key, value in d.items():
            if key in sections:
                kwargs[key] = _build(sections[key], value, key)
            elif key == "data":
                kwargs[key] = _typed(value, "str", "data")
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


def at_least(low):
    """A rule for LIMITS: value >= low."""
    return (lambda value: value >= low), f"at least {low}"


def above(low):
    """A rule for LIMITS: value > low."""
    return (lambda value: value > low), f"above {low}"


def between(low, high, below_high: bool = False):
    """A rule for LIMITS: low <= value <= high, or < high when below_high."""
    if below_high:
        return (lambda value: low <= value < high), f"at least {low} and below {high}"
    return (lambda value: low <= value <= high), f"between {low} and {high}"


def one_of(*choices: str):
    """A rule for LIMITS: one of the choices."""
    return (lambda value: value in choices), f"one of {', '.join(choices)}"


# What each field accepts beyond its type: (test, the rule in words). model.encoder is checked where the encoder is
# built, against torchvision's backbones.
LIMITS = {
    "shapes.image_size": at_least(16),  # below 16 px a large shape is drawn no larger than a small one
    "shapes.n_train": at_least(1),
    "shapes.n_val": at_least(1),
    "shapes.n_test": at_least(1),
    "shapes.min_objects": between(1, 3),  # captions count one, two or three shapes
    "shapes.max_objects": between(1, 3),
    "shapes.seed": at_least(0),
    "model.fine_tune_blocks": at_least(0),
    "model.grid_size": at_least(1),
    "model.image_size": at_least(16),
    "model.embed_dim": at_least(1),
    "model.attention_dim": at_least(1),
    "model.decoder_dim": at_least(1),
    "model.dropout": between(0.0, 1.0, below_high=True),  # nn.Dropout(1.0) zeroes everything
    "model.encoder_channels": at_least(1),
    "model.attention": one_of("soft", "hard", "none"),
    "model.decoder": one_of("lstm", "transformer"),
    "model.layers": at_least(1),
    "model.heads": at_least(1),
    "model.d_model": at_least(4),
    "model.ff_dim": at_least(1),
    "train.epochs": at_least(1),
    "train.batch_images": at_least(1),
    "train.lr": above(0.0),  # a rate of 0 learns nothing
    "train.encoder_lr": at_least(0.0),
    "train.weight_decay": at_least(0.0),
    "train.grad_clip": above(0.0),  # a clip norm of 0 zeroes every gradient
    "train.attention_lambda": at_least(0.0),
    "train.hard_sample_p": between(0.0, 1.0),
    "train.reinforce_weight": at_least(0.0),
    "train.baseline_decay": between(0.0, 1.0),
    "train.entropy_weight": at_least(0.0),
    "train.vocab_threshold": at_least(1),
    "train.max_caption_len": at_least(1),
    "train.seed": at_least(0),
    "train.val_beam_size": at_least(1),
    "train.select_on": one_of("bleu4", "last"),
    "train.device": one_of("auto", "cpu", "cuda"),
    "train.num_workers": at_least(0),
}


def _typed(value, kind: str, name: str):
    """value as the field's type (an int is a fine float, a bool is not an int), else a ValueError naming the field."""
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"config: {name}: {len(str(value))}-digit integer, too large for a float") from None
    python_type = {"int": int, "float": float, "bool": bool, "str": str}[kind]
    if not isinstance(value, python_type) or (kind == "int" and isinstance(value, bool)):
        raise ValueError(f"config: {name} = {value!r}: expected {kind}")
    if kind == "float" and not math.isfinite(value):  # NaN passes every comparison with a bound
        raise ValueError(f"config: {name} = {value!r}: must be a finite number")
    return value


def _check(name: str, value) -> None:
    """Raise a ValueError naming the field when value breaks its rule in LIMITS."""
    if name in LIMITS:
        test, rule = LIMITS[name]
        if not test(value):
            raise ValueError(f"config: {name} = {value!r}: must be {rule}")


def _check_section(section_config, section: str) -> None:
    """Each field's type and LIMITS, at construction (so also in Python, not only from JSON); errors name the field."""
    for f in dataclasses.fields(section_config):
        name = f"{section}.{f.name}"
        value = _typed(getattr(section_config, f.name), f.type, name)
        setattr(section_config, f.name, value)  # an int given for a float field becomes a float
        _check(name, value)


def _build(klass, values: dict, section: str):
    """Build one section dataclass from a dict, naming the field whose key is unknown or whose value is wrong."""
    if not isinstance(values, dict):
        raise ValueError(f"config: {section}: expected an object of fields, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in dataclasses.fields(klass)}
    if unknown:
        raise ValueError(f"config: unknown field {section}.{sorted(unknown)[0]}")
    return klass(**values)  # __post_init__ checks the values


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
        values = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text (byte {error.object[error.start]:#x})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    try:
        return Config.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
