"""Layers point down only: a module imports nothing from a layer above its own.

The layers, lowest first (a module belongs to the first prefix it starts with, most specific prefix wins):

0. ``knowledge``, ``prompts`` -- the curated FAQ and the prompt files; they know nothing of the bot.
1. ``bot.answering.types``, ``bot.answering.texts``, ``bot.answering.privacy`` -- what an answer is, what a user
   reads, and masking: the vocabulary storage shares with the bot.
2. ``storage`` -- the conversation log.
3. ``bot.answering``, ``bot.llm``, ``bot.curation`` -- answering a question, the LLM fallback, curators' tools.
4. ``bot.telegram``, ``bot.matrix``, ``bot.console``, ``bot.cli``, ``bot.app`` -- channels, the command line, wiring.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import does not make a layering
problem go away.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("knowledge", "prompts", "storage", "bot")
LAYERS: dict[str, int] = {
    "knowledge": 0,
    "prompts": 0,
    "bot.answering.types": 1,
    "bot.answering.texts": 1,
    "bot.answering.privacy": 1,
    "storage": 2,
    "bot.answering": 3,
    "bot.llm": 3,
    "bot.curation": 3,
    "bot.telegram": 4,
    "bot.matrix": 4,
    "bot.console": 4,
    "bot.cli": 4,
    "bot.app": 4,
    "bot.__main__": 4,
}


def layer_of(module: str) -> int | None:
    """The layer of a project module (None for a third-party or standard-library one, and for ``bot`` itself)."""
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return best[1] if best else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, this: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved; ``from a import b`` counts a.b too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = this.split(".")
                package = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(package + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def project_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def violations() -> list[str]:
    found = []
    for path in project_modules():
        this = module_name(path)
        if this == "bot":
            continue  # the empty top package
        own = layer_of(this)
        assert own is not None, f"{this} is in no layer: add it to LAYERS"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target in imported_modules(tree, this, path.name == "__init__.py"):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                found.append(f"{path.relative_to(ROOT)}:{line}: {this} (layer {own}) imports {target} (layer {theirs})")
    return found


def test_every_module_has_a_layer():
    assert project_modules()
    for path in project_modules():
        assert module_name(path) == "bot" or layer_of(module_name(path)) is not None, path


def test_layers_point_down_only():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path):
    # The walk must catch the forms an upward import takes: plain, from-import, inside a function, relative.
    code = (
        "import bot.app.settings\n"
        "from bot.cli import main\n"
        "def f():\n    from bot.telegram import app\n"
        "from ..app import runner\n"
    )
    tree = ast.parse(code)
    targets = [t for _, t in imported_modules(tree, "bot.answering.answerer")]
    layers = {t: layer_of(t) for t in targets}
    assert layers["bot.app.settings"] == 4
    assert layers["bot.cli.main"] == 4
    assert layers["bot.telegram.app"] == 4
    assert layers["bot.app.runner"] == 4
    assert layer_of("storage.writer") == 2 and layer_of("bot.answering.types") == 1 and layer_of("aiogram") is None
