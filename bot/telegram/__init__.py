"""Telegram adapter (aiogram 3.31) on top of the answering core.

Modules: ``app`` (create_bot, build_dispatcher, run_telegram: polling or webhook), ``handlers`` (private, group,
callbacks and errors routers), ``admin`` (/stats, /gaps, /reload), ``middlewares/`` (one per module: request
retries, throttling, answer lock, conversation lookup, in-flight tracking), ``answering`` (typing, drafts / placeholder edits, final
message), ``render`` (formatting and the 4096-unit splitter), ``keyboards`` (callback data and buttons),
``conversations`` (per chat-and-user LRU), ``options`` (tunables). Importing this package creates nothing.
"""
