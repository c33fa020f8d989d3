"""Pictures: an image tokenizer, a caption-to-picture GPT and drawing (`musegpt draw`)."""

from musegpt.images.model import (
    DEFAULT_IMAGE_MODEL,
    IMAGE_SIZES,
    MAX_IMAGES,
    ImageModel,
    ImageModelError,
    ImageRequestError,
    load_image_model,
    parse_size,
)
from musegpt.images.tokenizer import ImageTokenizer

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "IMAGE_SIZES",
    "MAX_IMAGES",
    "ImageModel",
    "ImageModelError",
    "ImageRequestError",
    "ImageTokenizer",
    "load_image_model",
    "parse_size",
]
