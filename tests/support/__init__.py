"""Helpers shared by every test folder, without state: the `faqbot` runners (cli.py), environment scrubbing
(env.py), free loopback ports (ports.py) and the conversation-log fixture builder (logs.py). The fixtures that
wrap them are in tests/conftest.py."""
