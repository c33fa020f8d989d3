"""OpenAI's 13 moderation categories, and which of them MuseGPT scores.

The keys and their order are those of OpenAI's `omni-moderation` answers, so a client that
reads OpenAI's results reads ours. `illicit`, `illicit/violent` and `violence/graphic` are
not scored (no offline part we could measure covers them): they are always present with
score 0, `false` and no applied input types."""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

UNSCORED: frozenset[str] = frozenset({"illicit", "illicit/violent", "violence/graphic"})
SCORED: tuple[str, ...] = tuple(c for c in CATEGORIES if c not in UNSCORED)

FLAG_AT = 0.5  # a category is flagged when its score reaches this
MODEL = "musegpt-moderation-1"  # the name answers carry, whatever model a client asks for

# What each scored category covers here (docs/safety.md and `musegpt moderate --explain`).
COVERS: dict[str, str] = {
    "harassment": "profanity or insults addressed to someone, telling someone to harm "
    "themselves, and (English) text the profanity classifier is sure of",
    "harassment/threatening": "threats to the person addressed (I will kill you, 我要杀了你)",
    "hate": "slurs, and statements that a protected group is vermin, criminal, inferior",
    "hate/threatening": "calls to kill or burn a protected group or its places of worship",
    "self-harm": "self-harm/intent or self-harm/instructions",
    "self-harm/instructions": "asking or telling how to kill or hurt oneself",
    "self-harm/intent": "saying one means to kill or hurt oneself",
    "sexual": "explicit sexual terms (one) or suggestive ones (two together)",
    "sexual/minors": "sexual content together with a child or an age under 18",
    "violence": "threats, announced attacks on a place or crowd, calls to kill a group",
}
