"""The GPT itself: config, layers, key/value cache and the model file."""

from musegpt.model.config import GPTConfig
from musegpt.model.gpt import GPT, GPTOutput
from musegpt.model.io import ModelFileError, load_model, save_model
from musegpt.model.kv_cache import KVCache

__all__ = ["GPT", "GPTConfig", "GPTOutput", "KVCache", "ModelFileError", "load_model", "save_model"]
