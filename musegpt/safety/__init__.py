"""Safety: offline moderation of English and Chinese text in OpenAI's categories."""

from musegpt.safety.categories import CATEGORIES, FLAG_AT, SCORED, UNSCORED
from musegpt.safety.moderator import Moderation, Moderator, moderate, moderator

__all__ = [
    "CATEGORIES",
    "FLAG_AT",
    "SCORED",
    "UNSCORED",
    "Moderation",
    "Moderator",
    "moderate",
    "moderator",
]
