"""Settings of the answering core: the knowledge it loads, matching thresholds and question limits."""

from __future__ import annotations

from pathlib import Path

from knowledge.loader import PACKAGE_KNOWLEDGE_DIR
from knowledge.match import Thresholds
from storage.settings import FaqbotSettings


class AnsweringSettings(FaqbotSettings):
    knowledge_dir: Path = PACKAGE_KNOWLEDGE_DIR
    direct_threshold: float = 50.0
    clarify_threshold: float = 40.0
    direct_margin: float = 8.0
    direct_lead: float = 15.0
    related_threshold: float = 33.0
    max_question_chars: int = 2000
    match_prefix_chars: int = 120
    # Also hand close calls ("clarify") to the LLM fallback, not only what matching could not place.
    llm_for_clarify: bool = True

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            direct=self.direct_threshold,
            clarify=self.clarify_threshold,
            margin=self.direct_margin,
            related=self.related_threshold,
            lead=self.direct_lead,
        )
