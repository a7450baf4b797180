"""The `faqbot` command line: ``main`` (entry point, the one error handler), ``parser`` (every command and option),
and one module per group of commands (``chat``, ``evaluate``, ``knowledge``, ``logs``, ``review``, ``serve``)."""
