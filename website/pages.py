"""The public pages, rendered on the server in Chinese: pure functions from data to HTML.

Every value reaches the page through :mod:`website.markup`, which escapes it. The one stylesheet is
inline; its SHA-256 (:data:`STYLE_CSP_SOURCE`) is what the Content-Security-Policy allows, so no
other inline style or script can run. There is no JavaScript.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import quote, urlencode

from website.labels import (
    KIND_NAMES,
    KIND_TITLES,
    format_amount,
    labelled_fields,
    reference_of,
)
from website.markup import Markup, join, render
from website.model import CHINA_TIME, Kind, StoredPublication
from website.pagination import Page

SITE_TITLE: Final = "信用东阿 · 东阿县交通运输局信用信息公示"
SEARCH_MAX_LENGTH: Final = 100
"""Longest search text taken from ``?q=``; the rest is ignored."""

KIND_PATHS: Final[Mapping[Kind, str]] = {
    Kind.PENALTY: "/penalties",
    Kind.LICENSING: "/licences",
    Kind.BLACKLIST: "/blacklist",
    Kind.REDLIST: "/redlist",
}
"""The list page of each kind."""

STYLE: Final = (
    ":root{--blue:#0b4a8b;--blue-dark:#073763;--red:#b3261e;--ink:#1f2933;--muted:#52606d;"
    "--line:#d9e2ec;--bg:#f4f6f9}"
    "*{box-sizing:border-box}"
    "body{margin:0;min-height:100vh;display:flex;flex-direction:column;background:var(--bg);"
    "color:var(--ink);line-height:1.65;font-size:16px;"
    'font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",'
    "system-ui,sans-serif}"
    "a{color:var(--blue)}"
    "a:focus-visible,input:focus-visible,button:focus-visible{outline:3px solid #f0b429;"
    "outline-offset:2px}"
    ".skip{position:absolute;left:-9999px}"
    ".skip:focus{left:1rem;top:1rem;z-index:1;background:#fff;padding:.5rem 1rem}"
    ".site-header{background:var(--blue);color:#fff;border-bottom:4px solid var(--red)}"
    ".wrap{max-width:1120px;margin:0 auto;padding:0 1.25rem}"
    ".brand{display:block;padding:1.1rem 0 .9rem;color:#fff;text-decoration:none;"
    "font-size:1.2rem;letter-spacing:.05em}"
    ".brand strong{font-size:1.6rem;margin-right:.25rem}"
    ".site-nav{background:var(--blue-dark)}"
    ".site-nav ul{list-style:none;display:flex;flex-wrap:wrap;margin:0;padding:0}"
    ".site-nav a{display:block;padding:.6rem 1.1rem;color:#fff;text-decoration:none}"
    ".site-nav a:hover,.site-nav a[aria-current=page]{background:rgba(255,255,255,.16)}"
    "main{flex:1 0 auto;width:100%;max-width:1120px;margin:1.5rem auto 2.5rem;padding:0 1.25rem}"
    "h1{font-size:1.45rem;margin:0 0 1rem;padding-left:.7rem;border-left:5px solid var(--red)}"
    "h2{font-size:1.15rem;margin:1.5rem 0 .75rem}"
    ".panel{background:#fff;border:1px solid var(--line);border-radius:6px;padding:1.25rem 1.5rem;"
    "margin-bottom:1.5rem}"
    ".search{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}"
    ".search label{width:100%;font-weight:600}"
    ".search input{flex:1 1 18rem;font:inherit;padding:.6rem .8rem;border:1px solid #7b8794;"
    "border-radius:4px}"
    ".search button{font:inherit;padding:.6rem 1.6rem;border:0;border-radius:4px;"
    "background:var(--red);color:#fff;cursor:pointer}"
    ".tiles{list-style:none;margin:0;padding:0;display:grid;gap:1rem;"
    "grid-template-columns:repeat(auto-fit,minmax(230px,1fr))}"
    ".tiles a{display:block;height:100%;padding:1rem 1.25rem;background:#fff;"
    "border:1px solid var(--line);border-top:4px solid var(--blue);border-radius:6px;"
    "color:var(--ink);text-decoration:none}"
    ".tiles a:hover{border-top-color:var(--red)}"
    ".tile-title{display:block;font-weight:600}"
    ".tile-count{font-size:2rem;font-weight:700;color:var(--blue);margin-right:.25rem}"
    ".muted{color:var(--muted)}"
    ".table-wrap{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:6px}"
    "table{width:100%;border-collapse:collapse}"
    "caption{text-align:left;padding:.75rem 1rem;color:var(--muted)}"
    "th,td{text-align:left;vertical-align:top;padding:.6rem 1rem;border-top:1px solid var(--line)}"
    "thead th{background:#eef2f7;white-space:nowrap}"
    ".fields th{width:15rem;background:#f8fafc;color:var(--muted);font-weight:600}"
    '.code{font-family:"Noto Sans Mono CJK SC",ui-monospace,monospace;letter-spacing:.02em}'
    ".pager{display:flex;justify-content:center;align-items:center;gap:1.25rem;margin:1.25rem 0}"
    ".empty{padding:1.5rem;text-align:center;color:var(--muted)}"
    ".site-footer{border-top:1px solid var(--line);background:#fff;color:var(--muted);"
    "font-size:.875rem;padding:1.25rem 0;text-align:center}"
    "@media (max-width:640px){.fields th{width:auto}.brand strong{display:block}}"
)
"""The site's whole stylesheet (no external files, no inline ``style`` attributes)."""

STYLE_CSP_SOURCE: Final = (
    "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"
)
"""The CSP source expression that allows exactly :data:`STYLE`."""

_LAYOUT = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - 信用东阿</title>
<style>{style}</style>
</head>
<body>
<a class="skip" href="#main">跳到正文</a>
<header class="site-header">
<div class="wrap"><a class="brand" href="/">
<strong>信用东阿</strong> · 东阿县交通运输局信用信息公示</a></div>
<nav class="site-nav" aria-label="主导航"><div class="wrap"><ul>{navigation}</ul></div></nav>
</header>
<main id="main">
{body}
</main>
<footer class="site-footer"><div class="wrap">
<p>东阿县交通运输局 主办。公示信息中的个人证件号码等个人信息已按规定遮蔽。</p>
<p>对公示信息有异议的，可向作出决定的机关提出。</p>
</div></footer>
</body>
</html>
"""

_NAVIGATION: Final = (
    ("/", "首页"),
    (KIND_PATHS[Kind.PENALTY], "行政处罚公示"),
    (KIND_PATHS[Kind.LICENSING], "行政许可公示"),
    (KIND_PATHS[Kind.BLACKLIST], "黑名单"),
    (KIND_PATHS[Kind.REDLIST], "红名单"),
)


def layout(title: str, body: Markup, *, current: str | None = None) -> Markup:
    """A whole page: header, navigation (``current`` marked for screen readers), body, footer."""
    navigation = join(
        render('<li><a href="{path}" aria-current="page">{name}</a></li>', path=path, name=name)
        if path == current
        else render('<li><a href="{path}">{name}</a></li>', path=path, name=name)
        for path, name in _NAVIGATION
    )
    return render(_LAYOUT, title=title, style=Markup(STYLE), navigation=navigation, body=body)


def detail_path(publication_id: str) -> str:
    """The public address of one publication."""
    return "/publications/" + quote(publication_id, safe="")


def shown_time(moment: datetime) -> str:
    """An instant as people in Dong'a read it: China time, to the minute."""
    return moment.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def _search_form(query: str = "") -> Markup:
    return render(
        """<form class="search" action="/search" method="get" role="search">
<label for="q">按名称、统一社会信用代码或车牌号查询</label>
<input id="q" name="q" type="search" value="{query}" maxlength="{limit}"
 placeholder="例如：东阿县某某运输有限公司、91371524……、鲁P12345" required>
<button type="submit">查询</button>
</form>""",
        query=query,
        limit=SEARCH_MAX_LENGTH,
    )


# --- home ---------------------------------------------------------------------------------------


def render_home(counts: Mapping[Kind, int]) -> Markup:
    """``/``: the search box and the four lists with how many records each shows."""
    tiles = join(
        render(
            """<li><a href="{path}"><span class="tile-title">{title}</span>
<span class="tile-count">{count}</span><span class="muted">条公示中</span></a></li>""",
            path=KIND_PATHS[kind],
            title=KIND_TITLES[kind],
            count=counts.get(kind, 0),
        )
        for kind in Kind
    )
    body = render(
        """<section class="panel" aria-labelledby="search-title">
<h1 id="search-title">信用信息查询</h1>
{form}
<p class="muted">个人证件号码已遮蔽，公示内容以作出决定的机关公布为准。</p>
</section>
<section aria-labelledby="lists-title">
<h2 id="lists-title">公示栏目</h2>
<ul class="tiles">{tiles}</ul>
</section>""",
        form=_search_form(),
        tiles=tiles,
    )
    return layout("首页", body, current="/")


# --- lists --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a list table."""

    header: str
    value: Callable[[StoredPublication], str]
    code: bool = False
    """Set in a monospace face (identifiers)."""


def _field(code: str) -> Callable[[StoredPublication], str]:
    def value(record: StoredPublication) -> str:
        item = record.content.fields.get(code)
        return "" if item is None else str(item)

    return value


def _reference(record: StoredPublication) -> str:
    return reference_of(record.content.kind, record.content.fields)


def _subject(record: StoredPublication) -> str:
    return record.content.subject_name


def _subject_code(record: StoredPublication) -> str:
    return record.content.subject_code


def _plate(record: StoredPublication) -> str:
    return record.content.plate or ""


def _decision_date(record: StoredPublication) -> str:
    return record.content.decision_date.isoformat()


def _publication_end(record: StoredPublication) -> str:
    end = record.content.publication_end
    return end.isoformat() if end else "—"


def _fine(record: StoredPublication) -> str:
    value = record.content.fields.get("CF_NR_FK")
    return "—" if value is None else format_amount(value)


def _kind_name(record: StoredPublication) -> str:
    return KIND_NAMES[record.content.kind]


_LIST_ENTRY_COLUMNS: Final = (
    Column("主体名称", _subject),
    Column("主体代码", _subject_code, code=True),
    Column("车牌号", _plate, code=True),
    Column("列入事由", _field("reason")),
    Column("列入日期", _decision_date),
    Column("公示截止期", _publication_end),
)

KIND_COLUMNS: Final[Mapping[Kind, Sequence[Column]]] = {
    Kind.PENALTY: (
        Column("行政处罚决定书文号", _reference),
        Column("行政相对人名称", _subject),
        Column("统一社会信用代码/证件号码", _subject_code, code=True),
        Column("处罚类别", _field("CF_CFLB")),
        Column("罚款金额", _fine),
        Column("处罚决定日期", _decision_date),
    ),
    Kind.LICENSING: (
        Column("行政许可决定文书号", _reference),
        Column("行政相对人名称", _subject),
        Column("统一社会信用代码/证件号码", _subject_code, code=True),
        Column("许可类别", _field("XK_XKLB")),
        Column("许可证书名称", _field("XK_XKZS")),
        Column("许可决定日期", _decision_date),
    ),
    Kind.BLACKLIST: _LIST_ENTRY_COLUMNS,
    Kind.REDLIST: _LIST_ENTRY_COLUMNS,
}
"""The columns of each kind's list page; the first one links to the detail page."""

SEARCH_COLUMNS: Final = (
    Column("主体名称", _subject),
    Column("类别", _kind_name),
    Column("主体代码", _subject_code, code=True),
    Column("车牌号", _plate, code=True),
    Column("文号", _reference),
    Column("决定日期", _decision_date),
)


def _cell(column: Column, record: StoredPublication) -> Markup:
    text = column.value(record) or "—"
    if column.code:
        return render('<td><span class="code">{text}</span></td>', text=text)
    return render("<td>{text}</td>", text=text)


def _table(caption: str, columns: Sequence[Column], records: Sequence[StoredPublication]) -> Markup:
    header = join(render('<th scope="col">{h}</th>', h=column.header) for column in columns)
    rows = []
    for record in records:
        first, rest = columns[0], columns[1:]
        link = render(
            '<th scope="row"><a href="{href}">{text}</a></th>',
            href=detail_path(record.publication_id),
            text=first.value(record) or "查看详情",
        )
        cells = join(_cell(column, record) for column in rest)
        rows.append(render("<tr>{link}{cells}</tr>", link=link, cells=cells))
    return render(
        """<div class="table-wrap"><table>
<caption>{caption}</caption>
<thead><tr>{header}</tr></thead>
<tbody>{rows}</tbody>
</table></div>""",
        caption=caption,
        header=header,
        rows=join(rows, "\n"),
    )


def _pager(page: Page, link: Callable[[int], str]) -> Markup:
    if page.count <= 1:
        return Markup("")
    previous = (
        render('<a href="{href}" rel="prev">上一页</a>', href=link(page.number - 1))
        if page.has_previous
        else Markup('<span class="muted">上一页</span>')
    )
    following = (
        render('<a href="{href}" rel="next">下一页</a>', href=link(page.number + 1))
        if page.has_next
        else Markup('<span class="muted">下一页</span>')
    )
    return render(
        """<nav class="pager" aria-label="分页">{previous}
<span>第 {number} / {count} 页</span>{following}</nav>""",
        previous=previous,
        number=page.number,
        count=page.count,
        following=following,
    )


def _summary(page: Page) -> str:
    if not page.total:
        return "暂无记录"
    return f"共 {page.total} 条，当前显示第 {page.first_row}–{page.last_row} 条"


def render_list(kind: Kind, page: Page, records: Sequence[StoredPublication]) -> Markup:
    """A kind's list page (``/penalties``, ``/licences``, ``/blacklist``, ``/redlist``)."""
    path = KIND_PATHS[kind]
    title = KIND_TITLES[kind]
    if records:
        content = _table(_summary(page), KIND_COLUMNS[kind], records)
    else:
        content = Markup('<p class="panel empty">暂无公示信息。</p>')
    body = render(
        "<h1>{title}</h1>\n{content}\n{pager}",
        title=title,
        content=content,
        pager=_pager(page, lambda number: f"{path}?page={number}"),
    )
    return layout(title, body, current=path)


# --- search -------------------------------------------------------------------------------------


def render_search(query: str, page: Page | None, records: Sequence[StoredPublication]) -> Markup:
    """``/search``: the form, and the results when there is a query (``page`` is then set)."""
    if page is None:
        results = Markup('<p class="muted">请输入名称、统一社会信用代码或车牌号。</p>')
    elif not records:
        results = render('<p class="panel empty">未找到与“{q}”相关的公示信息。</p>', q=query)
    else:
        caption = f"“{query}”的查询结果：{_summary(page)}"
        results = join(
            [
                _table(caption, SEARCH_COLUMNS, records),
                _pager(page, lambda number: "/search?" + urlencode({"q": query, "page": number})),
            ],
            "\n",
        )
    body = render(
        '<h1>信用信息查询</h1>\n<section class="panel">{form}</section>\n{results}',
        form=_search_form(query),
        results=results,
    )
    return layout(f"查询：{query}" if query else "信用信息查询", body)


# --- detail -------------------------------------------------------------------------------------


def _row(label: str, value: str, *, code: bool = False) -> Markup:
    template = (
        '<tr><th scope="row">{label}</th><td><span class="code">{value}</span></td></tr>'
        if code
        else '<tr><th scope="row">{label}</th><td>{value}</td></tr>'
    )
    return render(template, label=label, value=value)


def render_detail(record: StoredPublication) -> Markup:
    """``/publications/{id}``: the summary, then every standard field with its Chinese label."""
    content = record.content
    kind = content.kind
    reference = reference_of(kind, content.fields)
    heading = f"{KIND_NAMES[kind]}公示详情"
    summary_rows = [
        _row("信息类别", KIND_TITLES[kind]),
        _row("主体名称", content.subject_name),
        _row("主体代码", content.subject_code, code=True),
    ]
    if content.plate:
        summary_rows.append(_row("车牌号", content.plate, code=True))
    summary_rows += [
        _row("决定日期", content.decision_date.isoformat()),
        _row("公示截止期", _publication_end(record)),
        _row("发布时间", shown_time(record.published_at)),
    ]
    field_rows = [_row(label, value) for label, value in labelled_fields(content.fields)]
    fields = (
        render(
            """<h2 id="fields-title">公示内容</h2>
<div class="table-wrap"><table class="fields" aria-labelledby="fields-title">
<tbody>{rows}</tbody></table></div>""",
            rows=join(field_rows, "\n"),
        )
        if field_rows
        else Markup("")
    )
    body = render(
        """<h1>{heading}</h1>
<p class="muted">{reference}</p>
<div class="table-wrap"><table class="fields"><caption>基本信息</caption>
<tbody>{summary}</tbody></table></div>
{fields}
<p><a href="{back}">返回{list_title}</a></p>""",
        heading=heading,
        reference=reference,
        summary=join(summary_rows, "\n"),
        fields=fields,
        back=KIND_PATHS[kind],
        list_title=KIND_TITLES[kind],
    )
    return layout(f"{reference or content.subject_name} - {heading}", body)


# --- errors -------------------------------------------------------------------------------------

ERROR_TEXTS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("请求有误", "请求的参数不正确，请检查后重试。"),
    404: ("页面不存在", "您访问的页面不存在，或该信息已撤回、已超过公示期。"),
    405: ("请求方式不支持", "该页面不支持这种请求方式。"),
    413: ("请求过大", "请求内容超过了允许的大小。"),
    500: ("服务暂时不可用", "服务器处理请求时出现错误，请稍后再试。"),
    503: ("服务暂时不可用", "服务正在维护或暂时繁忙，请稍后再试。"),
}


def render_error(status: int, detail: str | None = None) -> Markup:
    """An error page in Chinese for ``status``; ``detail`` replaces the standard explanation."""
    title, explanation = ERROR_TEXTS.get(status, ERROR_TEXTS[500 if status >= 500 else 400])
    body = render(
        """<section class="panel">
<h1>{title}</h1>
<p>{explanation}</p>
<p><a href="/">返回首页</a> · <a href="/search">信用信息查询</a></p>
</section>""",
        title=title,
        explanation=detail or explanation,
    )
    return layout(title, body)


def content_security_policy() -> str:
    """The CSP of every response: nothing but this site, and only this site's stylesheet."""
    return (
        "default-src 'self'; "
        f"style-src {STYLE_CSP_SOURCE}; "
        "img-src 'self'; "
        "script-src 'none'; "
        "object-src 'none'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )
