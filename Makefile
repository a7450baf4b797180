# faqbot — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: run test bench install clean eval synapse-venv

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "faqbot needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,review,matrix]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## Start the bot: Telegram when TELEGRAM_BOT_TOKEN is set, else the console shell.
run: $(STAMP)
	@$(BIN)/faqbot run

## The Synapse homeserver the Matrix tests start on loopback (own venv, pinned; a no-op once installed).
synapse-venv: constraints-synapse.txt
	@PYTHON=$(PYTHON) bash scripts/synapse-venv.sh .venv-synapse

## Lint and format check (Ruff, configured in pyproject.toml), then the whole test suite: the quick loop on
## parallel workers, then the load, fault and Synapse tests one at a time with nothing else running (a run that
## may select them gets no workers: tests/support/workers.py).
test: $(STAMP) synapse-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -m "not load and not synapse"
	$(BIN)/python -m pytest -q -m "load or synapse"

eval: $(STAMP)
	$(BIN)/faqbot eval $(wildcard ../shared/eval/*.jsonl) tests/data/labelled_questions.jsonl tests/data/real_style_questions.jsonl tests/data/heldout_real_style.jsonl

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) .venv-synapse .pytest_cache
