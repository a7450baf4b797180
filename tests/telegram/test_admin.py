"""Admin commands (/stats, /gaps, /reload) for FAQBOT_ADMIN_IDS only; everyone else sees no trace of them."""

from __future__ import annotations

import shutil

from bot.answering import texts
from knowledge.loader import PACKAGE_KNOWLEDGE_DIR, load_knowledge
from tests.telegram.harness import CLARIFY_Q, FAQ_Q, NONE_Q, knowledge

ADMIN, USER = 1001, 2002


async def test_stats_and_gaps_for_the_admin_only(tg):
    async with tg(admin_ids=[ADMIN]) as env:
        await env.ask(FAQ_Q, user_id=USER)
        await env.ask(NONE_Q, user_id=USER)
        await env.ask("今天天气怎么样？", user_id=USER)
        await env.ask(CLARIFY_Q, user_id=USER)
        await env.press(
            env.sent(USER)[0].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
            env.sent(USER)[0].result,
            user_id=USER,
        )  # 👍 on the faq answer

        await env.ask("/stats", user_id=ADMIN)
        [stats] = env.sent(ADMIN)
        text = stats.params["text"]
        assert text.startswith(texts.ADMIN_STATS_HEAD)
        assert f"{texts.ADMIN_STATS_TOTAL}: 4" in text
        assert "faq 1" in text and "none 2" in text and "clarify 1" in text
        assert texts.ADMIN_STATS_FEEDBACK_LINE.format(up=1, down=0, none=0) in text
        assert any(e["type"] == "bold" for e in stats.params["entities"])

        await env.ask("/gaps", user_id=ADMIN)
        gaps = env.sent(ADMIN)[-1].params["text"]
        assert gaps.startswith(texts.ADMIN_GAPS_HEAD)
        lines = gaps.splitlines()[1:]
        assert "今天天气怎么样" in lines[0] and "×2" in lines[0]  # the two weather questions form one cluster
        assert any(CLARIFY_Q in line for line in lines)
        assert not any(FAQ_Q in line for line in lines)  # answered well: not a gap

        # a non-admin's /stats is just text: an ordinary answer, no numbers
        await env.ask("/stats", user_id=USER)
        reply = env.sent(USER)[-1].params["text"]
        assert texts.ADMIN_STATS_HEAD not in reply and texts.ADMIN_STATS_TOTAL not in reply
        await env.ask("/gaps", user_id=USER)
        assert texts.ADMIN_GAPS_HEAD not in env.sent(USER)[-1].params["text"]
        # the admin in a group: ignored (admin output never goes to a group)
        await env.ask("/stats", chat_type="supergroup", user_id=ADMIN)
        await env.ask("/stats@faq_test_bot", chat_type="supergroup", user_id=ADMIN)
        assert env.sent(env.fake.group_id) == []


async def test_stats_before_any_log_exists(tg):
    async with tg(admin_ids=[ADMIN]) as env:
        env.services.turn_log = None  # no writer: the database file is never created
        env.settings.db.unlink(missing_ok=True)
        await env.ask("/stats", user_id=ADMIN)
        assert env.sent(ADMIN)[-1].params["text"] == texts.ADMIN_NO_LOG


async def test_reload_with_a_broken_file_keeps_serving_then_reloads_the_fix(tmp_path, tg):
    kdir = tmp_path / "knowledge"
    shutil.copytree(PACKAGE_KNOWLEDGE_DIR, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    kb = load_knowledge(kdir)
    async with tg(kb=kb, knowledge_dir=kdir, admin_ids=[ADMIN]) as env:
        version = env.services.answerer.kb.version
        lost = kdir / "faq" / "09_lost_reissue.toml"
        good = lost.read_text(encoding="utf-8")
        lost.write_text(
            good.replace('id = "lost_reissue"', 'id = "lost reissue"').replace("answer = ", "answr = "),
            encoding="utf-8",
        )

        await env.ask("/reload", user_id=ADMIN)
        report = env.sent(ADMIN)[-1].params["text"]
        assert report.startswith(texts.ADMIN_RELOAD_FAILED.split("（")[0]) and version in report
        assert "09_lost_reissue.toml" in report
        assert env.services.answerer.kb.version == version  # the running version stays

        await env.ask(FAQ_Q, user_id=USER)  # and keeps answering
        assert env.sent(USER)[-1].params["text"].startswith(knowledge().get("lost_reissue").question)

        lost.write_text(good.replace("②补办", "②补办（已更新）"), encoding="utf-8")
        await env.ask("/reload", user_id=ADMIN)
        new_version = env.services.answerer.kb.version
        assert new_version != version
        assert env.sent(ADMIN)[-1].params["text"] == texts.ADMIN_RELOAD_OK.format(
            entries=len(kb.entries), version=new_version
        )
        await env.ask(FAQ_Q, user_id=USER)
        assert "②补办（已更新）" in env.sent(USER)[-1].params["text"]

        # a non-admin cannot reload
        lost.write_text(good, encoding="utf-8")
        await env.ask("/reload", user_id=USER)
        assert env.services.answerer.kb.version == new_version


async def test_admin_command_menu_is_set_per_admin(tg):
    from bot.telegram.app import set_commands

    async with tg(admin_ids=[ADMIN, 7007]) as env:
        env.fake.fail("setMyCommands", status=400)  # one failure does not stop the other calls
        await set_commands(env.bot, env.settings)
        calls = env.fake.calls_to("setMyCommands")
        assert [c.params.get("scope", {}).get("type") for c in calls] == ["default", "chat", "chat"]
        public = calls[0].params["commands"]
        assert [c["command"] for c in public] == ["start", "help", "faq"]
        assert all(c["description"] == texts.TG_COMMANDS[c["command"]] for c in public)
        admin = calls[2].params["commands"]
        assert [c["command"] for c in admin] == ["start", "help", "faq", "stats", "gaps", "reload"]
        assert calls[2].params["scope"] == {"type": "chat", "chat_id": 7007}
