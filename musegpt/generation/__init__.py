"""Turning a model's next-token distributions into text."""
