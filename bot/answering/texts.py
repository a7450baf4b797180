"""Every sentence a chat user sees, in one place (Simplified Chinese). Channels share these."""

from __future__ import annotations

from bot.answering.types import Candidate

BOT_NAME = "电子社保卡问答助手"
REFERRAL = "如需进一步帮助，可就近前往社会保障卡服务网点咨询。"
SOURCE_NOTE = "（以上内容来自河北省电子社保卡常见问题，其他省份的具体规定可能不同。）"

WELCOME = (
    f"您好！我是{BOT_NAME}。\n"
    "我可以回答电子社保卡的常见问题（内容来自河北省发布的《电子社保卡几点知识》），"
    "例如：怎么申领、登录密码忘了、人脸识别不通过、社保卡挂失补办、更改手机号、新生儿办卡等。\n"
    "请直接输入您的问题，或点击下方的话题。"
)
HELP = (
    "使用方法：\n"
    "• 直接用文字输入问题，例如“社保卡丢了怎么办”；\n"
    "• /faq 查看全部常见问题；\n"
    "• 每条回答下方可以点 👍 或 👎 告诉我们是否有帮助。\n"
    "本助手只回答电子社保卡常见问题，不会索要您的身份证号、手机号或银行卡号，请勿发送个人信息。"
)
EMPTY = "请用文字输入您想咨询的电子社保卡问题，例如：“电子社保卡怎么申领？”"
GREETING = f"您好！我是{BOT_NAME}，请直接输入您的问题，例如：“社保卡丢了怎么办？”"
THANKS = "不客气！还有其他电子社保卡的问题，随时问我。"
CLARIFY_HEAD = "您是想问以下哪个问题？"
CLARIFY_TAIL_NUMBERED = "请回复序号；如果都不是，请回复 0。"
NONE_OF_THESE = "都不是"
NONE_OF_THESE_ACK = "好的，已记录。您可以换个说法再问一次，或就近前往社会保障卡服务网点咨询。"
OUT_OF_SCOPE = "抱歉，这个问题不在电子社保卡常见问题的范围内，我无法准确回答。" + REFERRAL
RELATED_HEAD = "您也可以看看这些问题："
OTHER_MATTER_HEAD = "您还问到了另一件事，可以发送下面这个问题查看："
NON_TEXT = "抱歉，我只能看懂文字。请用文字输入您的问题，例如：“社保卡丢了怎么办？”"
TOO_LONG_NOTE = "（您的消息较长，我只根据开头部分作答。）"
THROTTLED = "您发送得太快了，请稍等片刻再问。"
BUSY_LLM = "上一个问题还在处理中，请稍候。"
STALE_BUTTON = "这个按钮已失效，请重新输入您的问题。"
FEEDBACK_THANKS_UP = "感谢您的反馈！"
FEEDBACK_THANKS_DOWN = "感谢反馈，我们会改进这个回答。"
LLM_FALLBACK = "抱歉，我暂时无法根据常见问题准确回答这个问题。" + REFERRAL
ERROR = "抱歉，处理您的问题时出了点问题，请稍后再试。" + REFERRAL
# Quote mode (bot/llm/quote.py): the only words around the quoted curated text.
QUOTE_LEAD = "以下内容摘自电子社保卡常见问题原文："
PARTIAL_HEAD = "常见问题中与此相关的内容："
PARTIAL_TAIL_NUMBERED = "请回复序号查看；如果都不是，请回复 0。"
PLACE_NOTE = "（您提到了{place}：以上回答来自河北省的电子社保卡常见问题，{place}的具体规定可能不同，请以当地社会保障卡服务网点的说明为准。）"
ELSEWHERE_NOTE = (
    "（以上回答来自河北省的电子社保卡常见问题，其他地区的具体规定可能不同，请以当地社会保障卡服务网点的说明为准。）"
)
PII_NOTE = "（为保护您的隐私，您消息中的身份证号、手机号或银行卡号不会被保存。请不要在聊天中发送这些信息。）"

# Short greetings / thanks that deserve a friendly reply rather than "out of scope".
GREETING_WORDS = {"你好", "您好", "在吗", "hello", "hi", "嗨", "哈喽", "早上好", "晚上好", "下午好", "请问", "喂"}
THANKS_WORDS = {"谢谢", "多谢", "谢谢你", "谢谢您", "感谢", "好的谢谢", "thanks", "thankyou", "thx"}


def numbered(choices: list[Candidate]) -> str:
    return "\n".join(f"{i}. {c.question}" for i, c in enumerate(choices, 1))


def clarify_text(choices: list[Candidate]) -> str:
    return f"{CLARIFY_HEAD}\n{numbered(choices)}\n{CLARIFY_TAIL_NUMBERED}"


def out_of_scope_text(related: list[Candidate]) -> str:
    if not related:
        return OUT_OF_SCOPE
    return f"{OUT_OF_SCOPE}\n\n{RELATED_HEAD}\n{numbered(related)}"


def quote_heading(question: str) -> str:
    return f"【{question}】"


def faq_text(question: str, answer: str) -> str:
    return f"{question}\n\n{answer}"


def partial_answer_text(question: str, answer: str, says: str) -> str:
    """An entry that answers only part of the question, followed by what the FAQ does not say."""
    return f"{faq_text(question, answer)}\n\n（{says}）"


def partial_offer_text(says: str, choices: list[Candidate]) -> str:
    """The question is about a detail the FAQ lacks: say so, then offer the related entries."""
    return f"{says}\n\n{PARTIAL_HEAD}\n{numbered(choices)}\n{PARTIAL_TAIL_NUMBERED}"


def partial_none_text(says: str, related: list[Candidate]) -> str:
    """The question is about something the FAQ does not cover at all (no entry has it)."""
    if not related:
        return says
    return f"{says}\n\n{RELATED_HEAD}\n{numbered(related)}"


def place_note(places: tuple[str, ...]) -> str:
    """The note under an answer to a question that names a place outside Hebei (or says 外地, 我们省...)."""
    return PLACE_NOTE.format(place="、".join(places[:3])) if places else ELSEWHERE_NOTE


# --- Telegram adapter (bot/telegram) -----------------------------------------------------------------------------
TG_THUMBS_UP = "👍 有帮助"
TG_THUMBS_DOWN = "👎 没帮助"
TG_GENERATING = "\n\n（正在生成回答……）"
TG_FAQ_HEAD = "电子社保卡常见问题（点击问题查看答案）："
TG_NOT_YOURS = "这些按钮是给提问的用户使用的，您可以直接向我提问。"
TG_COMMANDS = {"start": "开始使用", "help": "使用帮助", "faq": "常见问题列表"}
TG_ADMIN_COMMANDS = {
    "stats": "使用统计（管理员）",
    "gaps": "待补充的问题（管理员）",
    "reload": "重新加载知识库（管理员）",
}
ADMIN_NO_LOG = "还没有对话日志数据库。"
ADMIN_STATS_HEAD = "使用统计（全部记录）"
ADMIN_STATS_TOTAL = "问答总数"
ADMIN_STATS_DIRECT = "直接命中率"
ADMIN_STATS_ROUTES = "按处理方式"
ADMIN_STATS_CHANNELS = "按渠道"
ADMIN_STATS_FEEDBACK = "反馈"
ADMIN_STATS_FEEDBACK_LINE = "👍 {up}　👎 {down}　都不是 {none}"
ADMIN_STATS_GUARD = "模型回答被拦截"
ADMIN_STATS_ERRORS = "出错"
ADMIN_STATS_LATENCY = "响应时间 p50 / p95"
ADMIN_STATS_REVIEWS = "已审核"
ADMIN_STATS_REVIEWS_LINE = "{reviewed} 条（直接回答确认正确 {confirmed}/{direct}，待修改知识库 {open}）"
ADMIN_STATS_TOP = "最常命中的问题"
ADMIN_GAPS_HEAD = "待补充的问题（按出现次数）"
ADMIN_GAPS_EMPTY = "目前没有待补充的问题。"
ADMIN_RELOAD_OK = "知识库已重新加载：{entries} 条问答，版本 {version}。"
ADMIN_RELOAD_FAILED = "知识库有错误，未重新加载，仍使用当前版本（{version}）：\n{error}"
# Tell the asker (opt-in): a button under out-of-scope answers, and the follow-up once an answer exists.
NOTIFY_BUTTON = "有答案时通知我"
NOTIFY_OK = "好的，这个问题有了答案会通知您（30 天内有效）。"
NOTIFY_ALREADY = "已经登记过了，有了答案会通知您。"
NOTIFY_UNAVAILABLE = "抱歉，暂时无法登记，请稍后再试。"
NOTIFY_FOLLOW_UP = "您之前问过：“{question}”\n现在有答案了："
MATRIX_NOTIFY_HINT = "如需在有答案时收到通知，请回复本条消息：通知我"
MATRIX_NOTIFY_WORD = "通知我"

# Gap curation from the chat (admins): /gaps buttons, a cluster's questions, verdicts, a reply with an answer.
CURATE_OPEN_HINT = "点击问题查看详情并标记："
CURATE_CLUSTER_HEAD = "待补充的问题（共 {count} 次）"
CURATE_NEAREST = "最接近的问答：{title}（{faq_id}，相似度 {score:.0f}）"
CURATE_NO_NEAREST = "没有相近的问答。"
CURATE_REPLY_HINT = "直接回复本条消息并输入答案，即可用这些问题创建一条问答草稿（草稿不会对外提供）。"
CURATE_BTN_ENTRY = "归入：{title}"
CURATE_BTN_PICK = "归入其他问答…"
CURATE_BTN_NEW = "需要新问答"
CURATE_BTN_OOS = "不在范围内"
CURATE_BTN_BACK = "« 返回列表"
CURATE_PICK_HEAD = "这些问题应由哪条问答回答？"
CURATE_MARKED_ENTRY = "已标记 {n} 条提问：应由「{title}」（{faq_id}）回答。运行 faqbot knowledge suggest 生成备选问法。"
CURATE_MARKED_NEW = "已标记 {n} 条提问：需要新问答。运行 faqbot knowledge suggest 生成草稿，或回复本条消息输入答案。"
CURATE_MARKED_OOS = "已标记 {n} 条提问：不在范围内，已移出待补充列表。"
CURATE_NOTHING_LEFT = "这组问题已经处理过了。"
CURATE_STALE = "列表已过期，请重新发送 /gaps。"
CURATE_DRAFT_OK = (
    "已创建问答草稿 {draft_id}（{path}），不会对外提供。\n"
    "请补全分类和至少 12 个问法后运行 faqbot knowledge approve {draft_id}，再发送 /reload。"
)
CURATE_DRAFT_FAILED = "无法创建草稿：{error}"
CURATE_ANSWER_EMPTY = "请回复答案的文字内容。"
MATRIX_CURATE_HELP = (
    "命令：!gap 序号（查看问题）；!mark 序号 entry 问答ID / new / oos（标记）；"
    "!answer 序号 答案文字（创建草稿）；!gaps（刷新列表）；!reload（重新加载知识库）"
)
MATRIX_CURATE_PICK = "请先发送 !gaps，再用列表中的序号，例如 !gap 1。"


# --- Matrix adapter (bot/matrix) ------------------------------------------------------------------
MATRIX_WELCOME = (
    f"您好！我是{BOT_NAME}，可以回答电子社保卡的常见问题（内容来自河北省发布的《电子社保卡几点知识》）。\n"
    "私聊时请直接输入您的问题；在群聊中请 @我 或回复我的消息提问。\n"
    "我列出几个问题时，请回复序号；每条回答可以用 👍 或 👎 表示是否有帮助。\n"
    "请勿发送身份证号、手机号或银行卡号等个人信息。"
)
MATRIX_UNDECRYPTABLE = "抱歉，您刚才发送的加密消息我无法解密（缺少解密密钥，已向您的设备请求）。请再发送一次您的问题。"
MATRIX_ENCRYPTED_ROOM = (
    "抱歉，本助手只能在未加密的房间中使用，无法读取加密消息，现在将退出本房间。"
    "请新建一个关闭了端到端加密的房间（或私聊）再邀请我。"
)
