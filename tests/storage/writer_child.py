"""Child process for the kill -9 test: writes turns through a TurnLog forever, printing each turn id only after
``flush()`` has confirmed it committed ("acknowledged"). The parent kills it with SIGKILL at a random moment.

Usage: python writer_child.py DB_PATH RUN_TAG
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from bot.answering.types import Candidate, Conversation, Reply, Route  # noqa: E402
from storage.writer import TurnLog  # noqa: E402


async def main(db: str, tag: str) -> None:
    log = TurnLog(db, secret=b"kill9-test-secret", flush_interval=0.002)
    await log.start()
    convs = [Conversation("cli", f"chat-{n}", "cli", f"user-{n}") for n in range(3)]
    rng = random.Random()
    i = 0
    while True:
        ids = []
        for _ in range(rng.randint(1, 6)):
            i += 1
            turn_id = f"{tag}-{i:06d}"
            reply = Reply(
                route=Route.FAQ,
                text="可以在微信、支付宝或掌上12333申领电子社保卡。" * rng.randint(1, 5),
                question=f"电子社保卡怎么申领 第{i}次",
                normalized="电子社保卡怎么申领",
                faq_id="q01",
                section=1,
                score=91.5,
                candidates=[Candidate("q01", 1, 91.5, "电子社保卡怎么申领？")],
                turn_id=turn_id,
                latency_ms=rng.uniform(1, 50),
            )
            log.record_turn(rng.choice(convs), reply)
            if i % 3 == 0:
                log.record_feedback(turn_id, "up")
            ids.append(turn_id)
        await log.flush()
        sys.stdout.write("".join(f"{t}\n" for t in ids))
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
