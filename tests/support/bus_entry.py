"""A new FAQ entry the curation tests add (riding the bus with the card): its question, answer and alternates, and
the published entry file as `faqbot knowledge approve` would write it."""

from pathlib import Path

from knowledge.curation import DraftEntry

BUS_QUESTION = "社保卡能坐公交吗"
BUS_ANSWER = "部分城市的社保卡具有公交乘车功能，请咨询当地公交公司。"
BUS_ALTERNATES = [
    "社保卡坐公交",
    "社保卡乘公交车",
    "公交车上能刷社保卡吗",
    "社保卡当公交卡用",
    "社保卡刷公交要开通吗",
    "社保卡乘车功能",
    "电子社保卡乘车码",
    "社保卡坐地铁",
    "社保卡能刷地铁吗",
    "社保卡公交优惠",
    "老年人社保卡坐公交",
    "社保卡乘公交怎么开通",
]


def publish_bus_entry(knowledge_dir: Path) -> None:
    """Publish the entry into ``knowledge_dir``'s faq/ folder (its own question among the alternates)."""
    entry = DraftEntry(
        id="bus_card",
        section=0,
        question="社保卡可以乘坐公交吗？",
        alternates=[*BUS_ALTERNATES, BUS_QUESTION],
        answer=BUS_ANSWER,
        title="乘坐公交",
    )
    (knowledge_dir / "faq" / "99_bus_card.toml").write_text(entry.render(), encoding="utf-8")
