"""The writing studio: story, script, lyrics, brainstorm, describe, rewrite, plot-help."""

from musegpt.studio.studio import TASKS, Studio
from musegpt.studio.work import Work

__all__ = ["TASKS", "Studio", "Work"]
