"""The conversation log: schema and migrations, the writer, review queries, export, retention."""

from pathlib import Path

DATASETTE_DIR = Path(__file__).resolve().parent / "datasette"  # metadata and the serve-guard plugin ship here
