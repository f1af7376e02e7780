"""Motion tokenizer (paper A.1): wrist / finger 1-D conv VQ-VAEs quantised with GroupedResidualVQ into
64 + 64 tokens (4096 codes per part) per 15-frame chunk. See config.py for the token factorisation and
model.py for the API."""
from .config import MotionTokenizerConfig, TokenizerConfigError
from .model import MotionTokenizer

__all__ = ["MotionTokenizer", "MotionTokenizerConfig", "TokenizerConfigError"]
