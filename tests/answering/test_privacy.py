"""Tests for bot.answering.privacy: PII masking, pseudonymous ids, the pseudonymization secret.

Valid IDs and card numbers are built here with helpers written independently of the module (and the helpers are
checked against published examples), so no expected value is a number copied from the code under test.
"""

from __future__ import annotations

import os
import stat
import time

import pytest

from bot.answering.privacy import Masked, mask_pii, pseudonymize, pseudonymize_opt
from storage.secret_key import load_or_create_secret
from tests.support.env import set_environ

ID, PHONE, BANK = "[身份证号]", "[手机号]", "[银行卡号]"

# --- independent helpers ---------------------------------------------------------------------------------------


def id_check(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = 0
    for digit, weight in zip(first17, weights, strict=False):
        total += int(digit) * weight
    return "10X98765432"[total % 11]


def make_id(region: str = "110105", birth: str = "19491231", seq: str = "002") -> str:
    first17 = region + birth + seq
    assert len(first17) == 17
    return first17 + id_check(first17)


def bad_id(valid: str) -> str:
    """Same ID with a wrong check character."""
    wrong = "0" if valid[-1] != "0" else "1"
    return valid[:-1] + wrong


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def make_card(prefix: str, length: int) -> str:
    """Complete `prefix` with zeros and a Luhn check digit to `length` digits."""
    body = (prefix + "0" * length)[: length - 1]
    for last in "0123456789":
        if luhn_valid(body + last):
            return body + last
    raise AssertionError("unreachable")


def not_luhn(number: str) -> str:
    for last in "0123456789":
        candidate = number[:-1] + last
        if not luhn_valid(candidate):
            return candidate
    raise AssertionError("unreachable")


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() or c in "Xx+-" else ("\u3000" if c == " " else c) for c in s)


def group4(number: str, sep: str = " ") -> str:
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def test_helpers_match_published_examples():
    # GB 11643-1999 example ID, and well-known Luhn test numbers
    assert make_id("110105", "19491231", "002") == "11010519491231002X"
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert make_card("411111111111111", 16) == "4111111111111111"


VALID_ID = make_id()  # 11010519491231002X
ID_DIGIT_CHECK = make_id("130102", "19900307", "123")  # Shijiazhuang region, numeric or X check
ID_LEAP = make_id("440305", "20000229", "456")
CARD16 = make_card("622202123456789", 16)
CARD19 = make_card("621700123456789012", 19)

# --- masking table -----------------------------------------------------------------------------------------------

MASK_CASES = [
    # (description, input, expected text, (id, phone, bank))
    ("valid ID", f"身份证号{VALID_ID}", f"身份证号{ID}", (1, 0, 0)),
    ("valid ID, other region", f"我的身份证是{ID_DIGIT_CHECK}", f"我的身份证是{ID}", (1, 0, 0)),
    ("ID born on 29 Feb 2000", ID_LEAP, ID, (1, 0, 0)),
    ("ID with wrong check digit", f"身份证 {bad_id(VALID_ID)}", f"身份证 {ID}", (1, 0, 0)),
    ("ID lowercase x", f"号码{VALID_ID.lower()}", f"号码{ID}", (1, 0, 0)),
    ("ID followed by Chinese text", f"{VALID_ID}的电子社保卡怎么激活", f"{ID}的电子社保卡怎么激活", (1, 0, 0)),
    ("ID spaced 6-8-4", f"身份证 {VALID_ID[:6]} {VALID_ID[6:14]} {VALID_ID[14:]} 谢谢", f"身份证 {ID} 谢谢", (1, 0, 0)),
    ("ID dashed 6-8-4", f"{VALID_ID[:6]}-{VALID_ID[6:14]}-{VALID_ID[14:]}", ID, (1, 0, 0)),
    ("ID full-width", f"身份证：{fullwidth(VALID_ID)}。", f"身份证：{ID}。", (1, 0, 0)),
    ("15-digit legacy ID", "老身份证号130102900307123还能用吗", f"老身份证号{ID}还能用吗", (1, 0, 0)),
    ("mobile plain", "手机13812345678", f"手机{PHONE}", (0, 1, 0)),
    ("mobile spaced", "电话 138 1234 5678 ", f"电话 {PHONE} ", (0, 1, 0)),
    ("mobile dashed", "电话：199-8765-4321。", f"电话：{PHONE}。", (0, 1, 0)),
    ("mobile +86", "+86 13812345678", PHONE, (0, 1, 0)),
    ("mobile +86 dashed", "联系+86-138-1234-5678", f"联系{PHONE}", (0, 1, 0)),
    ("mobile 0086", "0086 13812345678", PHONE, (0, 1, 0)),
    ("mobile 86 glued", "8613812345678", PHONE, (0, 1, 0)),
    ("mobile full-width", f"手机号：{fullwidth('15912345678')}", f"手机号：{PHONE}", (0, 1, 0)),
    ("mobile full-width +86 spaced", fullwidth("+86 159 1234 5678"), PHONE, (0, 1, 0)),
    ("card 16 Luhn", f"我的卡{CARD16}丢了", f"我的卡{BANK}丢了", (0, 0, 1)),
    ("card 19 Luhn", CARD19, BANK, (0, 0, 1)),
    ("card spaced in 4s", f"卡 {group4(CARD16)} 挂失", f"卡 {BANK} 挂失", (0, 0, 1)),
    ("card 19 spaced in 4s", group4(CARD19), BANK, (0, 0, 1)),
    ("card dashed in 4s", group4(CARD16, "-"), BANK, (0, 0, 1)),
    ("card full-width spaced", fullwidth(group4(CARD16)), BANK, (0, 0, 1)),
    ("card after 卡号： (no Luhn)", f"卡号：{not_luhn(CARD16)}", f"卡号：{BANK}", (0, 0, 1)),
    ("12 digits after 银行卡号是", "银行卡号是 622202123456", f"银行卡号是 {BANK}", (0, 0, 1)),
    ("grouped after 账号", f"账号:{group4(not_luhn(CARD19))}", f"账号:{BANK}", (0, 0, 1)),
    ("after 银行账号为", "银行账号为6222021234567", f"银行账号为{BANK}", (0, 0, 1)),
    ("bad-checksum ID after 卡号 counts as bank", f"卡号{bad_id(VALID_ID)}", f"卡号{BANK}", (0, 0, 1)),
    ("valid ID after 卡号 stays an ID", f"社保卡号{VALID_ID}", f"社保卡号{ID}", (1, 0, 0)),
    (
        "two items",
        f"我的手机是13812345678，身份证{VALID_ID}",
        f"我的手机是{PHONE}，身份证{ID}",
        (1, 1, 0),
    ),
    (
        "three kinds, glued by spaces",
        f"{VALID_ID} 13812345678 {CARD16}",
        f"{ID} {PHONE} {BANK}",
        (1, 1, 1),
    ),
    ("two phones", "13812345678或15912345678", f"{PHONE}或{PHONE}", (0, 2, 0)),
    ("ID after a lone digit and a space", f"1 {VALID_ID}", f"1 {ID}", (1, 0, 0)),
]


@pytest.mark.parametrize("desc,text,expected,counts", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_mask_table(desc, text, expected, counts):
    m = mask_pii(text)
    assert isinstance(m, Masked)
    assert m.text == expected
    assert m.counts == {"id": counts[0], "phone": counts[1], "bank": counts[2]}
    assert m.total == sum(counts)


@pytest.mark.parametrize("desc,text,expected,counts", MASK_CASES, ids=[c[0] for c in MASK_CASES])
def test_masking_is_idempotent(desc, text, expected, counts):
    once = mask_pii(text)
    twice = mask_pii(once.text)
    assert twice.text == once.text
    assert twice.total == 0


def test_id_that_also_passes_luhn_is_counted_as_id():
    # about one ID in ten passes Luhn; find one and check it is masked as an ID, not a bank card
    for seq in range(1000):
        candidate = make_id("130102", "19850615", f"{seq:03d}")
        if candidate[-1] != "X" and luhn_valid(candidate):
            break
    else:
        raise AssertionError("no Luhn-valid ID found")
    m = mask_pii(f"证件{candidate}")
    assert m.text == f"证件{ID}"
    assert m.counts == {"id": 1, "phone": 0, "bank": 0}


def test_18_digits_not_date_shaped():
    # characters 7-14 are not a date: a bank card if Luhn-valid, otherwise left alone (order number)
    card18 = make_card("62220299999999999", 18)
    assert mask_pii(card18).counts == {"id": 0, "phone": 0, "bank": 1}
    order18 = not_luhn(card18)
    assert mask_pii(f"订单{order18}").text == f"订单{order18}"


NOT_PERSONAL = [
    "人社服务热线12333",
    "工商银行客服95588，建设银行95533，中国银行95566",
    "客服电话400-800-1234",
    "客服电话4008001234",
    "2024年1月1日起施行",
    "日期2024-01-01",
    "24小时内到账",
    "有效期10年",
    "手续费100元",
    "补卡需要1,000.00元吗",
    "编号12345678901",  # 11 digits starting with 12: not a mobile number
    "订单号12345678901234567890",  # 20 digits
    f"订单号12{VALID_ID[:-1]}1",  # 20 digits containing an ID-shaped run
    f"流水号{CARD16}0000",  # 20 digits containing a Luhn-valid 16-digit run
    f"流水号{not_luhn(CARD16)}",  # 16 digits, not Luhn, no keyword
    "石家庄市社保中心电话0311-87654321",
    "第1398号文件",
    "验证码是123456",
    "１２３３３",  # full-width hotline: left alone and left full-width
    "",
    "电子社保卡怎么申领？",
]


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_non_personal_numbers_left_alone(text):
    m = mask_pii(text)
    assert m.text == text
    assert m.total == 0


def test_output_keeps_original_characters_outside_masks():
    text = "电话：１３８１２３４５６７８，热线１２３３３，　谢谢"
    m = mask_pii(text)
    assert m.text == f"电话：{PHONE}，热线１２３３３，　谢谢"


def test_placeholders_do_not_look_like_personal_data():
    text = f"{ID}{PHONE}{BANK}" * 3
    assert mask_pii(text).text == text


def test_masking_is_fast():
    # budget: < 20 us for a 50-character question; asserted with a wide margin so a busy CI machine does not flake
    questions = [
        "请问电子社保卡怎么申领？我在石家庄，手机丢了怎么办，需要带什么材料吗谢谢啦好的",
        f"我的身份证号是{VALID_ID}，电子社保卡怎么申领？需要什么材料呢谢谢",
        "我的手机号是13812345678，电子社保卡怎么申领？需要什么材料呢谢谢您了",
    ]
    n = 2000
    for q in questions:
        start = time.perf_counter()
        for _ in range(n):
            mask_pii(q)
        per_call = (time.perf_counter() - start) / n
        assert per_call < 200e-6, (q, per_call)


def test_long_digit_soup_is_not_slow():
    text = ("1 2-3 " * 2000) + "0" * 5000
    start = time.perf_counter()
    mask_pii(text)
    assert time.perf_counter() - start < 1.0


# --- numbers typed in other ways (issue 12.4) ---------------------------------------------------------------
# A generator of valid numbers (independent of the module) and of the ways people and tools write them.

PROVINCE_REGIONS = ["110105", "130102", "310104", "440305", "510107", "650102", "130602"]


def gen_id(rng) -> str:
    year = rng.randint(1930, 2020)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    return make_id(rng.choice(PROVINCE_REGIONS), f"{year:04d}{month:02d}{day:02d}", f"{rng.randint(0, 999):03d}")


def gen_phone(rng) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def gen_card(rng) -> str:
    length = rng.choice([16, 19])
    prefix = rng.choice(["622202", "621700", "622848", "436742", "625965"])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return make_card(body, length)


def groups(number: str, sizes: list[int]) -> list[str]:
    out, pos = [], 0
    for n in sizes:
        out.append(number[pos : pos + n])
        pos += n
    if pos < len(number):
        out.append(number[pos:])
    return out


CIRCLED = dict(zip("0123456789", "⓪①②③④⑤⑥⑦⑧⑨", strict=False))
DINGBAT = dict(zip("0123456789", "⓿❶❷❸❹❺❻❼❽❾", strict=False))
MATH = {d: chr(0x1D7CE + int(d)) for d in "0123456789"}  # mathematical bold digits
SEPARATORS = [
    ".",
    "/",
    "-",
    " ",
    "  ",
    "\u3000",
    "\u00a0",
    "．",
    "／",
    "－",
    "—",
    "_",
    "·",
    " - ",
    "\u2060",
    "\u200b",
    "\u200b \u200b",
]


def spellings(number: str, sizes: list[int], rng) -> list[str]:
    """Ways to write ``number`` in the groups ``sizes``."""
    parts = groups(number, sizes)
    ways = [sep.join(parts) for sep in SEPARATORS]
    ways.append("".join(fullwidth(p) if i % 2 else p for i, p in enumerate(parts)))  # full-width mixed, glued
    ways.append(" ".join(fullwidth(p) if i % 2 == 0 else p for i, p in enumerate(parts)))
    ways.append(".".join(fullwidth(p) for p in parts))
    ways.append("\u200b".join(number))  # a zero-width space between every character
    ways.append("".join(c + "\u2060" for c in number))  # word joiners
    if number[-1] not in "Xx":
        ways.append("".join(CIRCLED[c] for c in number))
        ways.append("".join(DINGBAT[c] for c in number))
        ways.append("".join(MATH[c] for c in number))
        ways.append("".join(c + "\ufe0f\u20e3" for c in number))  # keycaps
        ways.append(" ".join(CIRCLED[c] if rng.random() < 0.5 else c for c in number))
    return ways


def _mask_expect(text: str, raw: str, placeholder: str) -> None:
    m = mask_pii(f"我的号码是{text}，电子社保卡怎么办？")
    assert m.text == f"我的号码是{placeholder}，电子社保卡怎么办？", (text, m.text)
    digits_left = "".join(ch for ch in m.text if ch.isdigit())
    assert raw[:7] not in digits_left


@pytest.mark.parametrize("seed", range(6))
def test_ids_in_any_format_are_masked(seed):
    import random

    rng = random.Random(seed)
    for _ in range(5):
        number = gen_id(rng)
        for sizes in ([18], [6, 8, 4], [4, 4, 4, 4, 2], [3, 3, 4, 4, 4], [6, 4, 4, 4]):
            for way in spellings(number, sizes, rng):
                _mask_expect(way, number, ID)


@pytest.mark.parametrize("seed", range(6))
def test_phones_in_any_format_are_masked(seed):
    import random

    rng = random.Random(100 + seed)
    for _ in range(5):
        number = gen_phone(rng)
        for sizes in ([11], [3, 4, 4], [4, 3, 4], [3, 8], [7, 4]):
            for way in spellings(number, sizes, rng):
                _mask_expect(way, number, PHONE)
                _mask_expect("+86 " + way, number, PHONE)


@pytest.mark.parametrize("seed", range(6))
def test_cards_in_any_format_are_masked(seed):
    import random

    rng = random.Random(200 + seed)
    for _ in range(5):
        number = gen_card(rng)
        for sizes in ([len(number)], [4, 4, 4, 4], [6]):
            for way in spellings(number, sizes, rng):
                _mask_expect(way, number, BANK)


def test_a_phone_after_a_date_is_found_and_the_date_kept():
    assert mask_pii("2024.01.15 13812345678").text == f"2024.01.15 {PHONE}"
    assert mask_pii("2024/01/15，138.1234.5678").text == f"2024/01/15，{PHONE}"


NOT_PERSONAL_OTHER_FORMATS = [
    "2024.01.15",
    "2024/01/15 12:30",
    "2024.01.15-2024.02.15",  # two dates: 16 digits, not written like a card
    "2024-01-15 至 2024-12-31 期间 12333",
    "有效期 2020.01.01-2030.01.01",
    "金额 1,234,567.89 元",
    "12,345,678,901 元",
    "服务器 192.168.100.100",
    "版本 13.8.1234.5678",  # 1-digit group inside: not a phone grouping
    "13 81 23 45 678",  # two-digit groups: a list of numbers
    "订单 563456 2024.01.15 1234",  # 18 digits with a date inside, but no province code
    "订单号 2024 0115 1234 5678 9012",  # 20 digits in groups of 4
    "第１２３３３号",
    "①②③ 三个步骤",
    "热线 12333，95566",
]


@pytest.mark.parametrize("text", NOT_PERSONAL_OTHER_FORMATS)
def test_non_personal_numbers_in_other_formats_are_left_alone(text):
    m = mask_pii(text)
    assert m.text == text and m.total == 0


# --- pseudonymous ids --------------------------------------------------------------------------------------------


def test_pseudonymize_is_stable_and_secret_dependent():
    a = pseudonymize(123456789, b"secret-one")
    assert a == pseudonymize(123456789, b"secret-one")
    assert a == pseudonymize("123456789", b"secret-one")  # ints and their decimal strings agree
    assert len(a) == 32 and all(c in "0123456789abcdef" for c in a)
    assert a != pseudonymize(123456789, b"secret-two")
    assert a != pseudonymize(123456780, b"secret-one")
    assert "123456789" not in a


def test_pseudonymize_is_hmac_sha256_prefix():
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"@alice:example.org", hashlib.sha256).hexdigest()[:32]
    assert pseudonymize("@alice:example.org", b"k") == expected


def test_pseudonymize_opt():
    assert pseudonymize_opt(None, b"k") is None
    assert pseudonymize_opt(42, b"k") == pseudonymize(42, b"k")


# --- secret file -------------------------------------------------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_configured_secret_wins(tmp_path):
    path = tmp_path / "secret"
    assert load_or_create_secret("my configured secret", path) == b"my configured secret"
    assert not path.exists()


def test_secret_is_created_persisted_and_reused(tmp_path):
    path = tmp_path / "state" / "nested" / "pseudonym.key"
    first = load_or_create_secret(None, path)
    assert path.exists()
    assert _mode(path) == 0o600
    assert len(first) == 64 and bytes.fromhex(first.decode())  # 32 random bytes, hex
    assert path.read_bytes().strip() == first
    assert load_or_create_secret(None, path) == first
    assert load_or_create_secret("", path) == first  # empty configuration means "not configured"
    assert load_or_create_secret("   ", path) == first
    assert not list(path.parent.glob("*.tmp"))  # no temporary files left behind


def test_secrets_differ_between_installations(tmp_path):
    assert load_or_create_secret(None, tmp_path / "a") != load_or_create_secret(None, tmp_path / "b")


def test_existing_secret_file_is_used(tmp_path):
    path = tmp_path / "key"
    path.write_text("handwritten-secret\n")
    os.chmod(path, 0o644)
    assert load_or_create_secret(None, path) == b"handwritten-secret"
    assert _mode(path) == 0o600  # permissions tightened


def test_empty_secret_file_is_replaced(tmp_path):
    path = tmp_path / "key"
    path.write_text("")
    value = load_or_create_secret(None, path)
    assert len(value) == 64
    assert path.read_bytes().strip() == value
    assert _mode(path) == 0o600


# --- every place a question goes (issue 12.4) ------------------------------------------------------------------
async def test_numbers_in_other_formats_are_masked_everywhere_a_question_goes(main_env, capsys, monkeypatch):
    """`faqbot ask --json --log` with the LLM on the loopback fake: the printed question and normalized key, the
    stored question and normalized columns, the request the LLM server received, and `logs export` (CSV and
    JSONL) hold no raw number, whichever way it was typed. (In-process: only what is printed and stored counts.)"""
    import json
    import sqlite3

    from tests.fakes.openai_server import FakeOpenAI, reply
    from tests.support.cli import faqbot_main_async

    phone, card, ident = "13812345678", CARD16, VALID_ID
    questions = [
        "我的手机 138.1234.5678 收不到验证码怎么办",
        "手机号 1381 234 5678，换了手机号电子社保卡怎么办",
        f"卡号 {'/'.join(group4(card).split())} 绑定不了怎么办",
        f"身份证 {ident[:6]}\u200b{ident[6:14]}\u2060{ident[14:]} 查无此人怎么回事",
        "电话 ①③⑧①②③④⑤⑥⑦⑧ 办这个东西要不要收钱",
        f"我的身份证是{fullwidth(ident[:9])}.{ident[9:]}，电话１３８ 1234　5678，这东西收费吗",
    ]
    raws = [phone, card, ident, ident[:6] + ident[6:14], "1234 5678", "1234.5678", "1234　5678", "234 5678"]

    async def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        return await faqbot_main_async(capsys, *args, stdin=stdin)

    def assert_clean(text: str, where: str) -> None:
        flat = "".join(ch for ch in text if ch.isdigit())
        for raw in raws:
            assert raw not in text, (where, raw)
        for raw in (phone, card, ident[:17]):
            assert raw not in flat, (where, raw)

    async with FakeOpenAI() as fake:
        fake.script(*[reply("可以在河北人社APP申领。[来源: apply]") for _ in questions])
        set_environ(
            monkeypatch,
            {
                "OPENAI_BASE_URL": fake.base_url + "/v1",
                "OPENAI_MODEL": "m",
                "FAQBOT_LLM_MAX_RETRIES": "0",
                "FAQBOT_SECRET": "pseudonym-secret-for-tests",
            },
        )
        code, out, err = await run("ask", "--json", "--log", stdin="\n".join(questions) + "\n")
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(rows) == len(questions)
        for row in rows:
            assert_clean(row["question"] + row["normalized"], "ask --json")
            assert any(p in row["question"] for p in (ID, PHONE, BANK)), row["question"]
        assert fake.requests, "no question reached the LLM"
        for request in fake.requests:
            assert_clean(json.dumps(request, ensure_ascii=False), "LLM request")

    db = main_env["FAQBOT_DB"]
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT question, normalized FROM turns").fetchall()
    conn.close()
    assert len(stored) == len(questions)
    for question, normalized in stored:
        assert_clean(question + normalized, "database")
    for fmt in ("csv", "jsonl"):
        code, out, err = await run("logs", "export", "--db", db, "--format", fmt)
        assert code == 0, err
        assert "手机" in out
        assert_clean(out, f"export {fmt}")
