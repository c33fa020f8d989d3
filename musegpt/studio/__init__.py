"""The writing studio: story, script, lyrics, brainstorm, describe, rewrite, plot-help, poem."""

from musegpt.studio.registry import TASKS, run_task
from musegpt.studio.studio import Studio
from musegpt.studio.work import Work

__all__ = ["TASKS", "Studio", "Work", "run_task"]
