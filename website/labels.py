"""Chinese labels of the 双公示 standard fields and how their values are shown.

The CF_*/XK_* codes and names are those of RULES.md §1 ("Data fields"); the list-entry fields are
this product's own (the publisher's list publications). Field order on a detail page is the order
of :data:`FIELD_LABELS`, then any field this table does not know, by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final

from website.model import AMOUNT_FIELDS, FieldValue, Kind, parse_amount

_AMOUNT_PLACES: Final = Decimal("0.0001")

FIELD_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        # 行政处罚 (CF_)
        "CF_WSH": "行政处罚决定书文号",
        "CF_XDR_MC": "行政相对人名称",
        "CF_XDR_LB": "行政相对人类别",
        "CF_XDR_SHXYM": "统一社会信用代码",
        "CF_XDR_GSZC": "工商注册号",
        "CF_XDR_ZZJG": "组织机构代码",
        "CF_XDR_SWDJ": "税务登记号",
        "CF_XDR_SYDW": "事业单位证书号",
        "CF_XDR_SHZZ": "社会组织登记证号",
        "CF_FRDB": "法定代表人",
        "CF_FR_ZJLX": "法定代表人证件类型",
        "CF_FR_ZJHM": "法定代表人证件号码",
        "CF_XDR_ZJLX": "证件类型",
        "CF_XDR_ZJHM": "证件号码",
        "CF_WFXW": "违法行为类型",
        "CF_SY": "违法事实",
        "CF_YJ": "处罚依据",
        "CF_CFLB": "处罚类别",
        "CF_NR": "处罚内容",
        "CF_NR_FK": "罚款金额",
        "CF_NR_WFFF": "没收违法所得、没收非法财物的金额",
        "CF_NR_ZKDX": "暂扣或吊销证照名称及编号",
        "CF_JDRQ": "处罚决定日期",
        "CF_YXQ": "处罚有效期",
        "CF_GSJZQ": "公示截止期",
        "CF_CFJG": "处罚机关",
        "CF_CFJGDM": "处罚机关统一社会信用代码",
        "CF_SJLY": "数据来源单位",
        "CF_SJLYDM": "数据来源单位统一社会信用代码",
        # 行政许可 (XK_)
        "XK_XKWS": "行政许可决定文书名称",
        "XK_WSH": "行政许可决定文书号",
        "XK_XDR_MC": "行政相对人名称",
        "XK_XDR_LB": "行政相对人类别",
        "XK_XDR_SHXYM": "统一社会信用代码",
        "XK_XDR_GSZC": "工商注册号",
        "XK_XDR_ZZJG": "组织机构代码",
        "XK_XDR_SWDJ": "税务登记号",
        "XK_XDR_SYDW": "事业单位证书号",
        "XK_XDR_SHZZ": "社会组织登记证号",
        "XK_FRDB": "法定代表人",
        "XK_FR_ZJLX": "法定代表人证件类型",
        "XK_FR_ZJHM": "法定代表人证件号码",
        "XK_XDR_ZJLX": "证件类型",
        "XK_XDR_ZJHM": "证件号码",
        "XK_XKLB": "许可类别",
        "XK_XKZS": "许可证书名称",
        "XK_XKBH": "许可编号",
        "XK_NR": "许可内容",
        "XK_JDRQ": "许可决定日期",
        "XK_YXQZ": "有效期自",
        "XK_YXQZI": "有效期至",
        "XK_XKJG": "许可机关",
        "XK_XKJGDM": "许可机关统一社会信用代码",
        "XK_ZT": "当前状态",
        "XK_SJLY": "数据来源单位",
        "XK_SJLYDM": "数据来源单位统一社会信用代码",
        # 2015-era 行政许可 fields still found in exchange data
        "XK_XMMC": "项目名称",
        "XK_SPLB": "审批类别",
        "XK_XDR_SFZ": "居民身份证号",
        "XK_JZQ": "截止期",
        "DFBM": "地方编码",
        "SJC": "数据更新时间",
        # list entries (黑名单 / 红名单)
        "subject_name": "主体名称",
        "subject_code": "主体代码",
        "plate": "车牌号",
        "list": "名单",
        "rule": "认定规则",
        "reason": "列入事由",
        "objection": "异议状态",
        "since": "列入日期",
        "until": "移出日期",
        # common
        "BZ": "备注",
    }
)
"""Field code → Chinese label."""

LIST_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "blacklist": "严重失信主体名单",
        "redlist": "守信激励名单",
        "watchlist": "重点关注名单",
    }
)
"""Values of a list entry's ``list`` field, in Chinese."""

KIND_TITLES: Final[Mapping[Kind, str]] = MappingProxyType(
    {
        Kind.PENALTY: "行政处罚公示",
        Kind.LICENSING: "行政许可公示",
        Kind.BLACKLIST: "严重失信主体名单（黑名单）",
        Kind.REDLIST: "守信激励名单（红名单）",
    }
)
"""Title of each kind's list page."""

KIND_NAMES: Final[Mapping[Kind, str]] = MappingProxyType(
    {
        Kind.PENALTY: "行政处罚",
        Kind.LICENSING: "行政许可",
        Kind.BLACKLIST: "黑名单",
        Kind.REDLIST: "红名单",
    }
)
"""Short name of each kind, for search results."""

_ORDER: Final = {code: position for position, code in enumerate(FIELD_LABELS)}


def field_label(code: str) -> str:
    """The Chinese label of ``code``; the code itself when the table does not know it."""
    return FIELD_LABELS.get(code, code)


def format_amount(value: FieldValue) -> str:
    """An amount in 万元 with four decimals (1 元 = 0.0001 万元), e.g. ``"0.2000 万元"``, rounded
    half up (四舍五入) when the sender gives more places (the publisher sends six).

    A value that is not an amount is shown as it was sent.
    """
    try:
        amount = parse_amount(value)
    except ValueError:
        return "" if value is None else str(value)
    return f"{amount.quantize(_AMOUNT_PLACES, rounding=ROUND_HALF_UP):f} 万元"


def format_value(code: str, value: FieldValue) -> str:
    """How the value of field ``code`` is shown: amounts in 万元, list names in Chinese, the rest
    as sent (masked values stay masked)."""
    if value is None:
        return ""
    if code in AMOUNT_FIELDS:
        return format_amount(value)
    if code == "list" and isinstance(value, str):
        return LIST_NAMES.get(value, value)
    return str(value)


NOT_SHOWN: Final = frozenset({"rule_id"})
"""Fields kept with a publication but not shown: a list entry's rule as the back end names it
(``overload.vehicle``); the page shows the rule's Chinese reason (列入事由) instead."""


def labelled_fields(fields: Mapping[str, FieldValue]) -> list[tuple[str, str]]:
    """``(label, shown value)`` of every non-empty field that is shown, in display order."""
    known = len(_ORDER)
    ordered = sorted(fields, key=lambda code: (_ORDER.get(code, known), code))
    rows = []
    for code in ordered:
        if code in NOT_SHOWN:
            continue
        shown = format_value(code, fields[code])
        if shown.strip():
            rows.append((field_label(code), shown))
    return rows


def reference_of(kind: Kind, fields: Mapping[str, FieldValue]) -> str:
    """The document number that identifies a record to the public: 处罚决定书文号 or 许可文书号
    (list entries: the decision number they rest on, when given)."""
    codes = ("XK_WSH", "CF_WSH") if kind is Kind.LICENSING else ("CF_WSH", "XK_WSH")
    for code in codes:
        value = fields.get(code)
        if value is not None and str(value).strip():
            return str(value)
    return ""
