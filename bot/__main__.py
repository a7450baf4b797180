"""`python -m bot`: the `faqbot` command (bot.cli.main)."""

import sys

from bot.cli.main import main

sys.exit(main())
