"""captionlib: Show, Attend and Tell (Xu et al., 2015) in small, readable PyTorch."""

from .attention import SoftAttention
from .captioner import Captioner
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import Config, ModelConfig, ShapesConfig, TrainConfig
from .decoder import Decoder
from .decoding import Caption, beam_search, beam_search_one_image, decode, greedy_decode
from .encoder import Encoder, WeightsNotFoundError
from .images import ImageLoadError, open_image
from .loss import LossTerms, caption_loss
from .metrics import bleu, object_scores
from .model import CaptionModel
from .vocab import Vocabulary, tokenize

__version__ = "0.1.0"

__all__ = [
    "Caption",
    "CaptionModel",
    "Captioner",
    "CheckpointError",
    "Config",
    "Decoder",
    "Encoder",
    "ImageLoadError",
    "LossTerms",
    "ModelConfig",
    "ShapesConfig",
    "SoftAttention",
    "TrainConfig",
    "Vocabulary",
    "WeightsNotFoundError",
    "beam_search",
    "beam_search_one_image",
    "bleu",
    "caption_loss",
    "decode",
    "greedy_decode",
    "load_checkpoint",
    "load_model",
    "object_scores",
    "open_image",
    "save_checkpoint",
    "tokenize",
]
