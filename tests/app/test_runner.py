"""`faqbot run` with settings it cannot run: one line on stderr from the CLI's one error handler, exit 2, nothing
started (bot/app/runner.py raises ConfigurationError, bot/cli/errors.py describes it)."""

from __future__ import annotations

import pytest

from tests.support.cli import faqbot_main
from tests.support.env import set_environ


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FAQBOT_TRANSPORTS": "telegram"}, "the telegram transport needs TELEGRAM_BOT_TOKEN"),
        ({"FAQBOT_TRANSPORTS": "irc,telegram"}, "unknown transport(s) irc"),
        ({"MATRIX_HOMESERVER": "http://127.0.0.1:9", "MATRIX_USER_ID": "@bot:localhost"}, "the matrix transport needs"),
    ],
)
def test_a_configuration_run_cannot_start_is_one_line_and_exit_2(clean_env, monkeypatch, tmp_path, capsys, env, says):
    monkeypatch.setenv("FAQBOT_DB", str(tmp_path / "faqbot.db"))
    set_environ(monkeypatch, env)
    code, out, err = faqbot_main(capsys, "run")
    assert code == 2 and out == ""
    assert err.startswith("faqbot run: " + says) and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "faqbot.db").exists()  # nothing started, not even the log
