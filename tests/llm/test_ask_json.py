"""`faqbot ask --json` with OPENAI_BASE_URL pointing at the loopback fake: the LLM fields are in the JSON. In-process
(`faqbot_main_async`): only what is printed counts; the real `ask` process is tested in tests/cli/test_main.py."""

from __future__ import annotations

import json

from tests.fakes.openai_server import FakeOpenAI, reply, status
from tests.support.cli import faqbot_main_async
from tests.support.env import set_environ

GOOD = "可以在河北人社APP、微信或支付宝申领电子社保卡，登录后按提示输入本人身份信息并人脸识别即可。[来源: apply]"


async def run_ask(capsys, *questions: str) -> tuple[int, list[dict], str]:
    code, out, err = await faqbot_main_async(
        capsys,
        "ask",
        "--json",
        *(questions if len(questions) == 1 else ()),
        stdin="\n".join(questions) if len(questions) > 1 else None,
    )
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return code, rows, err


async def test_ask_json_reports_llm_fields(main_env, capsys, monkeypatch):
    async with FakeOpenAI() as fake:
        fake.script(reply(GOOD), status(503), status(503), status(503))
        set_environ(
            monkeypatch,
            {
                "OPENAI_BASE_URL": fake.base_url + "/v1",
                "OPENAI_MODEL": "cli-test-model",
                "FAQBOT_LLM_MAX_RETRIES": "0",
                "FAQBOT_LLM_MODE": "generate",
            },
        )
        # one question per stdin line: a grounded LLM answer, then a server failure, then a direct FAQ hit
        code, rows, err = await run_ask(
            capsys, "", "我想在手机上弄个社保卡，去哪儿搞", "办这个东西要不要收钱", "电子社保卡登录密码忘记，怎么办？"
        )
    assert code == 0, err
    empty, good, failed, direct = rows
    assert good["route"] == "llm" and good["guard"] == "pass" and good["model"] == "cli-test-model"
    assert good["context_ids"][0] == "apply" and "来源" not in good["answer"]
    assert good["answer"].startswith("可以在河北人社APP")
    assert failed["route"] == "llm" and failed["guard"] is None and failed["error"].startswith("server-error")
    assert failed["context_ids"] and failed["model"] == "cli-test-model"
    assert direct["route"] == "faq" and "guard" not in direct
    assert empty["route"] == "none"
    assert len(fake.calls) == 2  # the empty line and the direct hit never reach the model
    assert fake.headers[0]["authorization"] == "Bearer not-needed"
