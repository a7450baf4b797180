"""Settings of the curators' command-line tools (`faqbot logs label/review/serve`, `faqbot knowledge ...`)."""

from __future__ import annotations

from pydantic import SecretStr

from storage.settings import FaqbotSettings


class ReviewSettings(FaqbotSettings):
    curator: str | None = None  # name stored with every review; else the OS user
    review_password: SecretStr | None = None  # required by `faqbot logs serve --host <non-loopback>`
