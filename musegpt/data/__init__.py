"""Corpora: reading sources, cleaning, deduplicating, tokenizing, splitting."""
