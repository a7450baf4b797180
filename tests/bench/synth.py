"""Synthetic knowledge bases for scaling benchmarks: the shipped FAQ plus generated entries, as TOML files.

Each generated entry is a distinct (city, group, topic) combination with a canonical question and 12+ alternates
built from varied question patterns, so entries share much vocabulary (as a large real FAQ would) but no phrase.
The result loads with the real loader (`knowledge.loader.load_knowledge`), validation included.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

from tests.bench.common import KNOWLEDGE_DIR

CITIES = [
    "石家庄",
    "保定",
    "唐山",
    "邯郸",
    "邢台",
    "沧州",
    "廊坊",
    "承德",
    "张家口",
    "秦皇岛",
    "衡水",
    "定州",
    "辛集",
    "雄安",
    "正定",
    "涿州",
    "迁安",
    "任丘",
    "三河",
    "武安",
]
GROUPS = [
    "退休人员",
    "外地户口",
    "农村居民",
    "在校学生",
    "灵活就业人员",
    "老年人",
    "残疾人",
    "军人家属",
    "个体户",
    "新参保人员",
    "企业职工",
    "机关事业单位人员",
    "低保户",
    "失业人员",
    "外籍人员",
    "港澳台居民",
    "新就业大学生",
    "返乡农民工",
    "现役军人",
    "独生子女家庭",
]
TOPICS = [
    "养老保险",
    "医保报销",
    "住房公积金",
    "失业保险金",
    "生育津贴",
    "工伤认定",
    "异地就医备案",
    "门诊慢特病",
    "医保个人账户",
    "职工医保",
    "居民医保",
    "缴费基数",
    "社保关系转移",
    "人事档案",
    "高龄补贴",
    "护理保险",
    "就业登记",
    "技能补贴",
    "创业担保贷款",
    "丧葬补助",
    "养老待遇资格认证",
    "医保电子凭证",
    "大病保险",
    "长期护理",
    "职业资格证书",
    "人才引进",
    "劳动合同备案",
    "工资拖欠投诉",
    "社保缴费证明",
    "医保转移接续",
]
ASKS = [
    "怎么办理",
    "在哪里办",
    "需要什么材料",
    "多久能办好",
    "能不能网上办",
    "可以找人代办吗",
    "要交多少钱",
    "办理流程是什么",
    "办不下来怎么办",
    "怎么查询进度",
    "有什么条件",
    "怎么取消",
    "怎么变更",
    "在手机上怎么弄",
    "去哪个窗口",
    "要本人去吗",
    "什么时候能到账",
    "标准是多少",
]
STYLES = [
    "{city}{group}{topic}{ask}",
    "{city}的{group}{topic}{ask}",
    "请问{city}{group}的{topic}{ask}",
    "{group}在{city}{topic}{ask}",
    "我是{city}{group}，{topic}{ask}",
    "{city}{topic}{group}{ask}",
    "想咨询{city}{group}{topic}{ask}",
    "{group}{topic}在{city}{ask}",
    "俺是{city}的{group}，{topic}咋{ask}",
    "{city}这边{group}的{topic}{ask}啊",
    "帮忙问下{city}{group}{topic}{ask}",
    "{city}{group}办{topic}{ask}",
    "{topic}{city}{group}{ask}",
    "{city}{group}关于{topic}{ask}",
    "老家{city}，{group}，{topic}{ask}",
    "{city}{group}的{topic}问题{ask}",
]


def _combos(seed: int):
    rng = random.Random(seed)
    combos = list(itertools.product(CITIES, GROUPS, TOPICS))
    rng.shuffle(combos)
    return combos


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def generate_knowledge(dest: Path, total_entries: int, *, seed: int = 11) -> tuple[Path, list[str]]:
    """Write a knowledge directory at `dest` with the shipped entries plus generated ones (`total_entries` in
    all). Returns (directory, probe questions aimed at generated entries, phrased unlike any stored phrase)."""
    from dataclasses import replace

    from knowledge.loader import Problem, load_paraphrases, load_places, load_terms
    from knowledge.normalize import Normalizer

    combos = _combos(seed)
    shipped = sorted((KNOWLEDGE_DIR / "faq").glob("*.toml"))
    n_gen = max(0, total_entries - len(shipped))
    if n_gen > len(combos):
        raise ValueError(f"at most {len(combos) + len(shipped)} entries can be generated")
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "faq").mkdir(parents=True)
    for data_file in KNOWLEDGE_DIR.glob("*.toml"):  # terms, paraphrases, places, partial answers
        shutil.copy(data_file, dest / data_file.name)
    for f in shipped:
        shutil.copy(f, dest / "faq" / f.name)

    problems: list[Problem] = []
    terms = replace(
        load_terms(dest / "terms.toml", problems),
        paraphrases=load_paraphrases(dest / "paraphrases.toml", problems),
        places=load_places(dest / "places.toml", problems),
    )
    norm = Normalizer(terms)
    taken: set[str] = set()
    from knowledge.loader import _read_toml  # the shipped phrases must stay unique too

    for f in shipped:
        data = _read_toml(f, problems) or {}
        for p in (data.get("question", ""), *data.get("alternates", [])):
            taken.add(norm.normalize(p).text)

    rng = random.Random(seed + 1)
    probes: list[str] = []
    for i, (city, group, topic) in enumerate(combos[:n_gen]):
        asks = rng.sample(ASKS, len(ASKS))
        styles = rng.sample(STYLES, len(STYLES))
        phrases: list[str] = []
        for style, ask in zip(itertools.cycle(styles), asks):
            p = style.format(city=city, group=group, topic=topic, ask=ask)
            key = norm.normalize(p).text
            if key and key not in taken:
                taken.add(key)
                phrases.append(p)
        question, alternates = phrases[0] + "？", phrases[1:14]
        answer = (
            f"{city}{group}办理{topic}：请携带本人有效身份证件，到{city}人社服务大厅或通过河北人社APP办理。"
            f"具体条件和标准以{city}当地最新政策为准，咨询电话12333。"
        )
        text = "\n".join(
            [
                f'id = "gen_{i:05d}"',
                f"section = {i % 14}",
                f"title = {_toml_str(city + topic)}",
                f"question = {_toml_str(question)}",
                f"answer = {_toml_str(answer)}",
                "alternates = [" + ", ".join(_toml_str(a) for a in alternates) + "]",
                "",
            ]
        )
        (dest / "faq" / f"gen_{i:05d}.toml").write_text(text, encoding="utf-8")
        if len(probes) < 200:
            # Unseen wording: words reordered and an ask from the entry's own list but in another style.
            probes.append(f"你好，{group}，住{city}，想问{topic}{asks[-1]}")
    return dest, probes
