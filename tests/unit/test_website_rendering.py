"""Labels, amounts, escaping and the stylesheet hash of the public pages (website/labels.py,
website/markup.py, website/pages.py)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from datetime import UTC, date, datetime
from types import MappingProxyType

import pytest

from processors.lifecycle import OBJECTION_MARK
from website.labels import (
    FIELD_LABELS,
    field_label,
    format_amount,
    format_value,
    labelled_fields,
    reference_of,
)
from website.markup import Markup, escape, join, render
from website.model import FieldValue, Kind, PublicationContent, StoredPublication
from website.pages import (
    SITE_TITLE,
    STYLE_CSP_SOURCE,
    content_security_policy,
    detail_path,
    render_detail,
    render_error,
    render_home,
    render_list,
    render_search,
    shown_time,
)
from website.pagination import Page


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("CF_WSH", "行政处罚决定书文号"),
        ("CF_XDR_MC", "行政相对人名称"),
        ("CF_XDR_SHXYM", "统一社会信用代码"),
        ("CF_XDR_ZJHM", "证件号码"),
        ("CF_WFXW", "违法行为类型"),
        ("CF_SY", "违法事实"),
        ("CF_YJ", "处罚依据"),
        ("CF_CFLB", "处罚类别"),
        ("CF_NR", "处罚内容"),
        ("CF_NR_FK", "罚款金额"),  # the value carries the unit: "0.2000 万元"
        ("CF_JDRQ", "处罚决定日期"),
        ("CF_CFJG", "处罚机关"),
        ("CF_CFJGDM", "处罚机关统一社会信用代码"),
        ("CF_GSJZQ", "公示截止期"),
        ("XK_WSH", "行政许可决定文书号"),
        ("XK_XKLB", "许可类别"),
        ("XK_YXQZI", "有效期至"),
        ("XK_XKJG", "许可机关"),
        ("reason", "列入事由"),
        ("CF_UNKNOWN_NEW", "CF_UNKNOWN_NEW"),  # unknown codes are shown as they are
    ],
)
def test_field_labels_are_the_standard_chinese_names(code: str, label: str) -> None:
    """Each standard field code has the Chinese label of RULES.md §1."""
    assert field_label(code) == label


def test_every_label_is_chinese_and_distinct_within_a_prefix() -> None:
    """No field is left with an English or empty label, and no two CF_ fields share one."""
    cf_labels = [label for code, label in FIELD_LABELS.items() if code.startswith("CF_")]
    assert len(cf_labels) == len(set(cf_labels))
    assert all(re.search(r"[\u4e00-\u9fff]", label) for label in FIELD_LABELS.values())


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0.2", "0.2000 万元"),  # 罚款2000元 (RULES.md §1's unit trap)
        ("0.2000", "0.2000 万元"),
        ("1.5", "1.5000 万元"),
        ("0.200000", "0.2000 万元"),  # the publisher sends six places
        ("1.234550", "1.2346 万元"),  # 12 345.50 元: 四舍五入 to whole yuan
        ("0.00005", "0.0001 万元"),  # half a yuan rounds up
        ("12", "12.0000 万元"),
        (0.05, "0.0500 万元"),
        (3, "3.0000 万元"),
        ("2000元", "2000元"),  # not an amount: shown as sent
        (None, ""),
    ],
)
def test_amounts_are_shown_in_wan_yuan_with_four_decimals(value: FieldValue, shown: str) -> None:
    """Fines are "x.xxxx 万元"."""
    assert format_amount(value) == shown


def test_values_are_shown_as_sent_except_amounts_and_list_names() -> None:
    """Masked values stay masked; amounts and list names are formatted."""
    assert format_value("CF_XDR_ZJHM", "371***********123X") == "371***********123X"
    assert format_value("CF_NR_FK", "0.2") == "0.2000 万元"
    assert format_value("list", "blacklist") == "严重失信主体名单"
    assert format_value("BZ", None) == ""


def test_labelled_fields_follow_the_standard_order_and_drop_empty_ones() -> None:
    """Standard fields first in table order, unknown ones after by name, empty ones left out."""
    fields: dict[str, FieldValue] = {
        "ZZ_LOCAL": "x",
        "CF_NR_FK": "0.2",
        "CF_WSH": "东交罚〔2025〕1号",
        "BZ": "",
        "CF_SY": None,
    }
    assert labelled_fields(fields) == [
        ("行政处罚决定书文号", "东交罚〔2025〕1号"),
        ("罚款金额", "0.2000 万元"),
        ("ZZ_LOCAL", "x"),
    ]


def test_reference_is_the_decision_number_of_the_kind() -> None:
    """Penalties show CF_WSH, licences XK_WSH."""
    fields: dict[str, FieldValue] = {"CF_WSH": "罚1", "XK_WSH": "许1"}
    assert reference_of(Kind.PENALTY, fields) == "罚1"
    assert reference_of(Kind.LICENSING, fields) == "许1"
    assert reference_of(Kind.BLACKLIST, {}) == ""


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('" onmouseover="x', "&quot; onmouseover=&quot;x"),
        ("'single'", "&#x27;single&#x27;"),
        ("A&B 运输", "A&amp;B 运输"),
        ("{braces}", "{braces}"),  # format placeholders in a value are not interpreted
        (42, "42"),
    ],
)
def test_render_escapes_every_value(value: object, escaped: str) -> None:
    """Values interpolated into a template are escaped; the template is not."""
    assert render("<td title={v}>{v}</td>", v=value) == f"<td title={escaped}>{escaped}</td>"


def test_markup_is_not_escaped_twice_and_string_methods_drop_the_trust() -> None:
    """Markup passes through; str operations on it give plain str that would be escaped."""
    bold = render("<b>{x}</b>", x="<i>")
    assert escape(bold) is bold
    assert join([bold, Markup("<br>")]) == "<b>&lt;i&gt;</b><br>"
    assert type(bold + "<i>") is str
    assert escape(bold.upper()) == "&lt;B&gt;&amp;LT;I&amp;GT;&lt;/B&gt;"


def _stored(**changes: object) -> StoredPublication:
    content = PublicationContent(
        kind=Kind.PENALTY,
        subject_name="东阿县<script>alert(1)</script>运输有限公司",
        subject_code="371***********123X",
        plate="鲁P12345",
        fields=MappingProxyType(
            {
                "CF_WSH": "东交罚〔2025〕0007号",
                "CF_NR_FK": "0.2",
                "CF_XDR_ZJHM": "371***********123X",
            }
        ),
        decision_date=date(2025, 9, 26),
        publication_end=date(2026, 9, 26),
        revision=1,
    )
    published = datetime(2025, 9, 28, 2, 30, tzinfo=UTC)
    record = StoredPublication("pen-0007", content, published, published, None, None)
    return dataclasses.replace(record, **changes)


def test_detail_page_shows_labels_amounts_and_escaped_values() -> None:
    """The detail page has the site header, Chinese labels, the fine in 万元 and no live tag."""
    page = render_detail(_stored())
    assert SITE_TITLE in " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert "行政处罚决定书文号" in page and "东交罚〔2025〕0007号" in page
    assert "0.2000 万元" in page
    assert "371***********123X" in page
    assert "<script>" not in page.split("</style>", 1)[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "2025-09-28 10:30" in page  # published 02:30 UTC is 10:30 in China


def test_a_disputed_list_entry_shows_its_objection_mark() -> None:
    """The lifecycle marks a published entry while an objection against it is open."""
    fields = {"reason": "货运车辆1年内违法超限运输超过3次", "objection": OBJECTION_MARK}
    stored = _stored()
    entry = dataclasses.replace(
        stored.content, kind=Kind.BLACKLIST, fields=MappingProxyType(fields)
    )
    page = render_detail(dataclasses.replace(stored, content=entry))
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "异议状态 存在异议，正在核查" in text
    assert text.index("列入事由") < text.index("异议状态")


def test_a_list_entry_s_rule_id_is_kept_but_not_shown() -> None:
    """The public page is Chinese: the rule's reason is shown, not its back-end id."""
    rows = labelled_fields(
        {"reason": "货运车辆1年内违法超限运输超过3次", "rule_id": "overload.vehicle"}
    )
    assert rows == [("列入事由", "货运车辆1年内违法超限运输超过3次")]


def test_every_page_carries_the_stylesheet_its_csp_allows() -> None:
    """The inline stylesheet's SHA-256 is the one style source of the CSP."""
    pages = [
        render_home({Kind.PENALTY: 3}),
        render_list(Kind.PENALTY, Page(1, 1), [_stored()]),
        render_search("100%", Page(1, 0), []),
        render_detail(_stored()),
        render_error(404),
    ]
    for page in pages:
        style = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" == STYLE_CSP_SOURCE
        assert 'lang="zh-CN"' in page
        assert " style=" not in page and "<script" not in page
    assert f"style-src {STYLE_CSP_SOURCE};" in content_security_policy()
    assert "default-src 'self'" in content_security_policy()


def test_home_page_links_every_list_with_its_count() -> None:
    """The home page has the search box and links to the four lists."""
    page = render_home({Kind.PENALTY: 3, Kind.LICENSING: 0, Kind.BLACKLIST: 1, Kind.REDLIST: 2})
    for path in ("/penalties", "/licences", "/blacklist", "/redlist"):
        assert f'href="{path}"' in page
    assert 'action="/search"' in page and 'name="q"' in page
    assert '<span class="tile-count">3</span>' in page


def test_search_page_keeps_the_query_escaped_in_the_form_and_pager_links() -> None:
    """A query with HTML and URL metacharacters is escaped in the form and encoded in links."""
    records = [_stored(publication_id=f"p{n}") for n in range(20)]
    page = render_search('"><b>100%&', Page(1, 45), records)
    assert 'value="&quot;&gt;&lt;b&gt;100%&amp;"' in page
    assert 'href="/search?q=%22%3E%3Cb%3E100%25%26&amp;page=2"' in page
    assert "<b>100" not in page


def test_error_page_is_in_chinese() -> None:
    """404 explains itself in Chinese and links home."""
    page = render_error(404)
    assert "页面不存在" in page and 'href="/"' in page


def test_detail_path_quotes_the_id_and_time_is_china_time() -> None:
    """Ids are quoted into paths; times are shown in China time."""
    assert detail_path("a/b c") == "/publications/a%2Fb%20c"
    assert shown_time(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == "2026-01-01 00:00"
