"""双公示: the publication request for each licensing and penalty decision, masked, with deadlines.

Pure: no I/O. The worker calls :func:`publication_for_penalty` / :func:`publication_for_licensing`
for every valid decision and writes :func:`request_to_dict` of each :class:`PublicationRequest` to
the outbox topic ``publication-requests`` keyed by :attr:`PublicationRequest.publication_id`; the
publisher (``sinks/publisher.py``) delivers it to the credit website.

**Deadlines.**

- A decision is published within 7 working days of its decision date, the decision day not
  counted (发改电〔2015〕557号; 民法典 第201条): :func:`processors.workdays.deadline`, which is
  *provisional* (and never later than the real one) where the holiday schedule is unknown.
- A revoked or changed decision is withdrawn "三日内" (行政处罚法 第48条). **Local choice:** the 3
  days are counted as calendar days from the decision date of the revocation or change (the day
  itself not counted). The 2021 law's supplementary provisions are believed to define its 二日/
  三日/五日/七日 as working days (not verified here); working days can only give a later day, so
  calendar days are the stricter, fail-closed reading. A *modified* decision's replacing record
  carries the same 3-day deadline, since the old text must come down within it.

**What is not published** (:class:`NotPublished`, in this order of precedence): confidential
decisions (state or trade secrets, privacy), decisions against minors (浙江省 model, RULES.md §1),
penalties that are only a 警告 (SAMR Order No. 45 analogue), simple-procedure penalties when
:attr:`DisclosureRules.simple_procedure_published` is off, and penalties of a tier the regime in
force on the decision date does not publish (轻微 from 2026-04-01, NDRC Order 2025 No. 36). A
*modified* decision that is no longer publishable becomes a withdrawal (reason ``revoked``), since
an earlier revision may be on the website.

**Severity tier** (:func:`severity_tier`), a documented local choice after the examples of Order
No. 36 (RULES.md §3), to be confirmed by the bureau:

- 严重 (serious): any of 吊销许可证件, 限制开展生产经营活动, 责令停产停业, 责令关闭, 限制从业,
  行政拘留, or a fine of at least :attr:`DisclosureRules.serious_fine_yuan_gte`;
- 轻微 (minor): a simple-procedure penalty, or one that is only 警告 and/or 通报批评;
- 一般 (general): everything else (other fines, confiscation, 暂扣, 降低资质等级).

**Publication end** (``CF_GSJZQ``): the decision date plus the tier's ``max_months`` in the policy
version in force on the decision date (``publication_periods`` of ``config/policy.yaml``). Where
the regime's period is not configured (before 2026-04-01 the sourced periods are missing) the end
is ``None``: published until withdrawn. Licensing decisions have no end (local choice).

**Masking** (before anything leaves; the website refuses unmasked personal data):

- resident ID numbers: :func:`processors.identifiers.mask_identifier`, first 3 and last 2 kept
  (``371*************2X``): the province and prefecture, never the birth date (digits 7-14);
  legacy 15-digit numbers likewise;
- mobile numbers: first 3 and last 4 kept (``138****5678``); landlines keep the area code only;
- bank accounts (labelled, grouped in fours, or any other run of 12+ digits): last 4 kept;
- addresses and phones of the subject: never published; the structured fields are dropped, their
  values and any labelled address (``住址：…``) are cut out of free text;
- names of natural persons other than the subject (a driver when the carrier is penalised): named
  by role in free text (``驾驶人张三`` → ``驾驶人某某``), or given explicitly, become ``某某``.
  Names are found heuristically (a role word, then 2-4 Han characters up to a word that cannot be
  part of a name); the subject's own name and the legal representative (published as
  ``CF_FRDB``) are kept.

Every free-text field (``CF_SY``, ``CF_NR``, ``CF_WFXW``, ``CF_YJ``, ``CF_NR_ZKDX``, ``BZ``, the
``XK_`` equivalents, and the parts of a publication id) goes through :func:`mask_free_text`.
"""

from __future__ import annotations

import calendar as _calendar
import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

from processors.identifiers import (
    EARLIEST_BIRTH_DATE,
    PROVINCE_CODES,
    check_uscc,
    mask_identifier,
)
from processors.model import (
    ChangeType,
    LicenceStatus,
    LicensingDecision,
    PenaltyCategory,
    PenaltyDecision,
    Procedure,
    SubjectType,
)
from processors.policy import Policy, PolicyBook, PolicyError, PublicationTier
from processors.workdays import CHINESE_CALENDAR, WorkdayCalendar, deadline

__all__ = [
    "CATEGORY_LABELS",
    "DEFAULT_DISCLOSURE_RULES",
    "LICENCE_STATUS_LABELS",
    "REQUEST_SCHEMA_VERSION",
    "SUBJECT_TYPE_LABELS",
    "DisclosureRules",
    "NotPublished",
    "PublicationAction",
    "PublicationKind",
    "PublicationRequest",
    "RequestFormatError",
    "SeverityTier",
    "WithdrawalReason",
    "add_months",
    "find_personal_data",
    "mask_free_text",
    "publication_for_licensing",
    "publication_for_penalty",
    "publication_id_for",
    "repairable_from",
    "request_from_dict",
    "request_to_dict",
    "severity_tier",
    "tier_for",
    "yuan_to_wan",
]


class PublicationAction(enum.StrEnum):
    """What the website is asked to do."""

    PUBLISH = "PUBLISH"
    """Create or replace the publication (``PUT``)."""
    WITHDRAW = "WITHDRAW"
    """Take it down (``DELETE``)."""


class PublicationKind(enum.StrEnum):
    """The website's ``kind``."""

    PENALTY = "penalty"
    LICENSING = "licensing"
    BLACKLIST = "blacklist"
    REDLIST = "redlist"


class WithdrawalReason(enum.StrEnum):
    """The website's withdrawal ``reason``."""

    REVOKED = "revoked"
    EXPIRED = "expired"
    REPAIRED = "repaired"
    OBJECTION_UPHELD = "objection_upheld"


class SeverityTier(enum.StrEnum):
    """Publication tier of a penalty (RULES.md §3); see :func:`severity_tier`."""

    MINOR = "MINOR"  # 轻微
    GENERAL = "GENERAL"  # 一般
    SERIOUS = "SERIOUS"  # 严重


# Reason codes of NotPublished: stable, machine-readable.
CONFIDENTIAL = "CONFIDENTIAL"
SUBJECT_IS_MINOR = "SUBJECT_IS_MINOR"
WARNING_ONLY = "WARNING_ONLY"
SIMPLE_PROCEDURE = "SIMPLE_PROCEDURE"
TIER_NOT_PUBLISHED = "TIER_NOT_PUBLISHED"

SUBJECT_TYPE_LABELS: Mapping[SubjectType, str] = MappingProxyType(
    {
        SubjectType.LEGAL_PERSON: "法人及非法人组织",
        SubjectType.NATURAL_PERSON: "自然人",
        SubjectType.INDIVIDUAL_BUSINESS: "个体工商户",
    }
)
"""``CF_XDR_LB`` / ``XK_XDR_LB`` labels."""

CATEGORY_LABELS: Mapping[PenaltyCategory, str] = MappingProxyType(
    {
        PenaltyCategory.WARNING: "警告",
        PenaltyCategory.PUBLIC_CRITICISM: "通报批评",
        PenaltyCategory.FINE: "罚款",
        PenaltyCategory.CONFISCATE_ILLEGAL_GAINS: "没收违法所得",
        PenaltyCategory.CONFISCATE_ILLEGAL_PROPERTY: "没收非法财物",
        PenaltyCategory.SUSPEND_LICENCE: "暂扣许可证件",
        PenaltyCategory.LOWER_QUALIFICATION: "降低资质等级",
        PenaltyCategory.REVOKE_LICENCE: "吊销许可证件",
        PenaltyCategory.RESTRICT_OPERATIONS: "限制开展生产经营活动",
        PenaltyCategory.SUSPENSION_ORDER: "责令停产停业",
        PenaltyCategory.ORDER_CLOSURE: "责令关闭",
        PenaltyCategory.RESTRICT_PRACTICE: "限制从业",
        PenaltyCategory.ADMINISTRATIVE_DETENTION: "行政拘留",
    }
)
"""``CF_CFLB`` names (RULES.md §1), joined with ``、`` in the order the decision lists them."""

LICENCE_STATUS_LABELS: Mapping[LicenceStatus, str] = MappingProxyType(
    {
        LicenceStatus.GRANTED: "有效",
        LicenceStatus.SUSPENDED: "暂停",
        LicenceStatus.REVOKED: "撤销",
        LicenceStatus.CANCELLED: "注销",
    }
)
"""``XK_ZT`` labels (local choice: no standard code list was found)."""

_ID_DOCUMENT_TYPE = "身份证"
_NO_CODE = "无"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
_ID_DIGEST_LETTERS = 20
_ID_DIGEST_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_ID_READABLE_MAX = 48
_CATEGORY_SEPARATOR = "、"
_WAN = Decimal(10_000)
_SIX_PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class DisclosureRules:
    """Publication rules ``config/policy.yaml`` does not hold (yet); defaults are local choices.

    Pass a different instance to override; the bureau must confirm every default.
    """

    publication_working_days: int = 7
    """双公示 deadline in working days (发改电〔2015〕557号)."""
    withdrawal_days: int = 3
    """Withdrawal deadline in calendar days (行政处罚法 第48条 "三日内"; see the module docs)."""
    warning_only_published: bool = False
    """Publish a penalty that is only a 警告 (SAMR Order No. 45 says no)."""
    simple_procedure_published: bool = False
    """Publish a simple-procedure (简易程序) penalty. Local choice: no, these are the 轻微 tier and
    rarely "具有一定社会影响" (行政处罚法 第48条)."""
    serious_fine_yuan_gte: Decimal = Decimal(50_000)
    """A fine of at least this many yuan makes a penalty serious ("巨额罚款"). Local choice."""
    serious_categories: frozenset[PenaltyCategory] = frozenset(
        {
            PenaltyCategory.REVOKE_LICENCE,
            PenaltyCategory.RESTRICT_OPERATIONS,
            PenaltyCategory.SUSPENSION_ORDER,
            PenaltyCategory.ORDER_CLOSURE,
            PenaltyCategory.RESTRICT_PRACTICE,
            PenaltyCategory.ADMINISTRATIVE_DETENTION,
        }
    )
    """Categories that make a penalty serious on their own."""
    minor_categories: frozenset[PenaltyCategory] = frozenset(
        {PenaltyCategory.WARNING, PenaltyCategory.PUBLIC_CRITICISM}
    )
    """A penalty with only these categories is minor."""
    data_source_name: str | None = None
    """``CF_SJLY`` / ``XK_SJLY``; the deciding authority when None."""
    data_source_code: str | None = None
    """``CF_SJLYDM`` / ``XK_SJLYDM``; the deciding authority's code when None."""


DEFAULT_DISCLOSURE_RULES = DisclosureRules()


@dataclass(frozen=True, slots=True)
class NotPublished:
    """A decision that is not published, and why."""

    reason_code: str
    """Stable reason: ``CONFIDENTIAL``, ``SUBJECT_IS_MINOR``, ``WARNING_ONLY``,
    ``SIMPLE_PROCEDURE`` or ``TIER_NOT_PUBLISHED``."""
    reason: str
    """The reason in plain words; carries no personal data."""
    publication_id: str
    """The id the decision would have been published under."""
    tier: SeverityTier | None = None
    """The penalty's tier, when it was classified."""


@dataclass(frozen=True, slots=True)
class PublicationRequest:
    """One thing to do on the credit website: publish (or replace) or withdraw a record.

    Everything in it is already masked: it may leave the process as it is.
    """

    publication_id: str
    """Stable id on the website, from the decision number (``CF:``) or the licence and document
    numbers (``XK:``): see :func:`publication_id_for`."""
    action: PublicationAction
    """Publish or withdraw."""
    kind: PublicationKind
    """Penalty or licensing (lists later)."""
    revision: int
    """The decision's revision; the website ignores a lower revision than it holds."""
    decision_date: date
    """The decision date the deadline counts from."""
    deadline: date
    """The last day on which the website must show the change."""
    deadline_provisional: bool
    """The deadline counted unknown days as working days: it may be earlier than the real one."""
    source_event_id: str
    """The decision event this request came from."""
    fields: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    """The 双公示 standard fields (``CF_*`` or ``XK_*``, and ``BZ``); empty for a withdrawal."""
    subject_name: str = ""
    """Name of the subject (published: natural persons included); empty for a withdrawal."""
    subject_code: str = ""
    """USCC, the masked ID number of a natural person, else the plate, else ``无``; empty for a
    withdrawal."""
    plate: str | None = None
    """Plate of the vehicle in the case, if any."""
    publication_end: date | None = None
    """``CF_GSJZQ``: the last day of publication; None until withdrawn."""
    tier: SeverityTier | None = None
    """A penalty's severity tier."""
    withdrawal_reason: WithdrawalReason | None = None
    """Why a withdrawal is made; None for a publication."""
    policy_version: str | None = None
    """The policy version whose publication periods applied."""

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        if (self.action is PublicationAction.WITHDRAW) != (self.withdrawal_reason is not None):
            raise ValueError("a withdrawal, and only a withdrawal, carries a withdrawal reason")


class RequestFormatError(ValueError):
    """A dict is not a valid serialised :class:`PublicationRequest`."""


# --- classification -----------------------------------------------------------------------------


def severity_tier(
    decision: PenaltyDecision, rules: DisclosureRules = DEFAULT_DISCLOSURE_RULES
) -> SeverityTier:
    """The publication tier of a penalty (local choice, see the module docs)."""
    return tier_for(
        decision.penalty_categories, decision.fine_amount_yuan, decision.procedure, rules
    )


def tier_for(
    penalty_categories: Iterable[PenaltyCategory],
    fine_amount_yuan: Decimal,
    procedure: Procedure,
    rules: DisclosureRules = DEFAULT_DISCLOSURE_RULES,
) -> SeverityTier:
    """The publication tier of a penalty with these categories, fine and procedure."""
    categories = set(penalty_categories)
    if categories & rules.serious_categories or (
        PenaltyCategory.FINE in categories and fine_amount_yuan >= rules.serious_fine_yuan_gte
    ):
        return SeverityTier.SERIOUS
    if procedure is Procedure.SIMPLE or (categories and categories <= rules.minor_categories):
        return SeverityTier.MINOR
    return SeverityTier.GENERAL


def repairable_from(decision_date: date, tier: SeverityTier, book: PolicyBook) -> date | None:
    """The first day a record may be repaired: its minimum publication period is over.

    The period is the tier's ``min_months`` in the regime in force on the decision date
    (信用修复管理办法: "达到最短公示期限"). A tier that is not published has no minimum. None when
    the regime does not configure the tier: the minimum is unknown, so no repair can be approved.
    """
    periods = _tier_of(_policy_on(book, decision_date), tier)
    if periods is None:
        return None
    if periods.min_months is None:
        return None if periods.published else decision_date
    return add_months(decision_date, periods.min_months)


def _policy_on(book: PolicyBook, day: date) -> Policy | None:
    try:
        return book.in_force_on(day)
    except PolicyError:
        return None  # before the first version: no regime is known, nothing is configured


def _tier_of(policy: Policy | None, tier: SeverityTier) -> PublicationTier | None:
    if policy is None or policy.publication_periods is None:
        return None
    periods = policy.publication_periods
    if tier is SeverityTier.MINOR:
        return periods.minor
    if tier is SeverityTier.GENERAL:
        return periods.general
    return periods.serious


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` months, the day clamped to the month's end (01-31 + 1 → 02-28)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, _calendar.monthrange(year, month)[1]))


def yuan_to_wan(amount_yuan: Decimal) -> str:
    """An amount in yuan as 万元 with 6 decimal places: ``Decimal(2000)`` → ``"0.200000"``."""
    return str((amount_yuan / _WAN).quantize(_SIX_PLACES, rounding=ROUND_HALF_UP))


# --- requests -----------------------------------------------------------------------------------


def publication_for_penalty(
    decision: PenaltyDecision,
    calendar: WorkdayCalendar = CHINESE_CALENDAR,
    policy: PolicyBook | None = None,
    rules: DisclosureRules = DEFAULT_DISCLOSURE_RULES,
) -> PublicationRequest | NotPublished:
    """The publication request for one penalty decision event, or why it is not published.

    :param calendar: working days, with the operator's official schedules.
    :param policy: the policy book; the version in force on the decision date gives the
        publication period. Without one no period is known (``publication_end`` None).
    :param rules: the rules :class:`DisclosureRules` holds.
    """
    publication_id = publication_id_for("CF", decision.decision_number)
    if decision.change_type is ChangeType.REVOKED:
        return _withdrawal(
            publication_id,
            PublicationKind.PENALTY,
            decision.revision,
            decision.decision_date,
            decision.event_id,
            rules,
        )
    tier = severity_tier(decision, rules)
    version = _policy_on(policy, decision.decision_date) if policy is not None else None
    period = _tier_of(version, tier)
    exclusion = _exclusion(decision, tier, period, rules, version)
    if exclusion is not None:
        code, reason = exclusion
        if decision.change_type is ChangeType.MODIFIED:
            # An earlier revision may be on the website: take it down.
            return _withdrawal(
                publication_id,
                PublicationKind.PENALTY,
                decision.revision,
                decision.decision_date,
                decision.event_id,
                rules,
            )
        return NotPublished(code, reason, publication_id, tier)

    if decision.change_type is ChangeType.MODIFIED:
        due, provisional = _withdrawal_due(decision.decision_date, rules), False
    else:
        legal = deadline(decision.decision_date, rules.publication_working_days, calendar)
        due, provisional = legal.due, legal.provisional
    end = (
        add_months(decision.decision_date, period.max_months)
        if period is not None and period.max_months is not None
        else None
    )
    keep = _kept_names(decision.subject_name, decision.legal_representative)
    redact = _redactions(decision.subject_address, decision.subject_phone)

    def text(value: str | None) -> str | None:
        return None if value is None else mask_free_text(value, keep_names=keep, redact=redact)

    fields: dict[str, str | None] = {
        **_subject_fields("CF", decision),
        "CF_WSH": text(decision.decision_number),
        "CF_WFXW": text(decision.violation_type),
        "CF_SY": text(decision.facts),
        "CF_YJ": text(decision.legal_basis),
        "CF_CFLB": _CATEGORY_SEPARATOR.join(
            CATEGORY_LABELS[category] for category in decision.penalty_categories
        ),
        "CF_NR": text(decision.content),
        "CF_NR_FK": yuan_to_wan(decision.fine_amount_yuan),
        "CF_NR_WFFF": yuan_to_wan(decision.confiscated_amount_yuan),
        "CF_NR_ZKDX": text(decision.licence_suspended_or_revoked),
        "CF_JDRQ": decision.decision_date.isoformat(),
        "CF_YXQ": None,  # 处罚有效期: not carried by the decision event
        "CF_GSJZQ": end.isoformat() if end is not None else None,
        "CF_CFJG": decision.authority,
        "CF_CFJGDM": decision.authority_code,
        "CF_SJLY": rules.data_source_name or decision.authority,
        "CF_SJLYDM": rules.data_source_code or decision.authority_code,
        "BZ": text(decision.remarks),
    }
    return PublicationRequest(
        publication_id=publication_id,
        action=PublicationAction.PUBLISH,
        kind=PublicationKind.PENALTY,
        revision=decision.revision,
        decision_date=decision.decision_date,
        deadline=due,
        deadline_provisional=provisional,
        source_event_id=decision.event_id,
        fields=fields,
        subject_name=decision.subject_name,
        subject_code=decision.subject_uscc
        or fields["CF_XDR_ZJHM"]
        or decision.plate_number
        or _NO_CODE,
        plate=decision.plate_number,
        publication_end=end,
        tier=tier,
        policy_version=version.version if version is not None else None,
    )


def _exclusion(
    decision: PenaltyDecision,
    tier: SeverityTier,
    period: PublicationTier | None,
    rules: DisclosureRules,
    version: Policy | None,
) -> tuple[str, str] | None:
    if decision.confidential:
        return CONFIDENTIAL, "involves state or trade secrets or personal privacy"
    if decision.subject_is_minor:
        return SUBJECT_IS_MINOR, "the penalised person is a minor"
    categories = set(decision.penalty_categories)
    if categories == {PenaltyCategory.WARNING} and not rules.warning_only_published:
        return WARNING_ONLY, "a penalty that is only a warning (警告) is not published"
    if decision.procedure is Procedure.SIMPLE and not rules.simple_procedure_published:
        return SIMPLE_PROCEDURE, "simple-procedure (简易程序) penalties are not published"
    if period is not None and not period.published:
        name = version.version if version is not None else "?"
        return TIER_NOT_PUBLISHED, f"the {tier.value} tier is not published under policy {name}"
    return None


def publication_for_licensing(
    decision: LicensingDecision,
    calendar: WorkdayCalendar = CHINESE_CALENDAR,
    policy: PolicyBook | None = None,
    rules: DisclosureRules = DEFAULT_DISCLOSURE_RULES,
) -> PublicationRequest:
    """The publication request for one licensing decision (every one is published).

    ``policy`` is accepted for symmetry with :func:`publication_for_penalty`; a licensing record
    has no publication end (local choice), so it is not consulted.
    """
    del policy  # no regime applies to licensing records (yet)
    publication_id = publication_id_for("XK", decision.licence_number, decision.document_number)
    legal = deadline(decision.decision_date, rules.publication_working_days, calendar)
    keep = _kept_names(decision.subject_name, decision.legal_representative)

    def text(value: str | None) -> str | None:
        return None if value is None else mask_free_text(value, keep_names=keep)

    fields: dict[str, str | None] = {
        **_subject_fields("XK", decision),
        "XK_XKWS": text(decision.document_name),
        "XK_WSH": text(decision.document_number),
        "XK_XKLB": text(decision.licence_category),
        "XK_XKZS": text(decision.certificate_name),
        # A 从业资格证 number is often the holder's ID number: masked like free text.
        "XK_XKBH": text(decision.licence_number),
        "XK_NR": text(decision.content),
        "XK_JDRQ": decision.decision_date.isoformat(),
        "XK_YXQZ": decision.valid_from.isoformat(),
        "XK_YXQZI": decision.valid_until.isoformat() if decision.valid_until else None,
        "XK_XKJG": decision.authority,
        "XK_XKJGDM": decision.authority_code,
        "XK_ZT": LICENCE_STATUS_LABELS[decision.status],
        "XK_SJLY": rules.data_source_name or decision.authority,
        "XK_SJLYDM": rules.data_source_code or decision.authority_code,
        "BZ": text(decision.remarks),
    }
    return PublicationRequest(
        publication_id=publication_id,
        action=PublicationAction.PUBLISH,
        kind=PublicationKind.LICENSING,
        revision=decision.revision,
        decision_date=decision.decision_date,
        deadline=legal.due,
        deadline_provisional=legal.provisional,
        source_event_id=decision.event_id,
        fields=fields,
        subject_name=decision.subject_name,
        subject_code=decision.subject_uscc
        or fields["XK_XDR_ZJHM"]
        or decision.plate_number
        or _NO_CODE,
        plate=decision.plate_number,
    )


def _withdrawal(
    publication_id: str,
    kind: PublicationKind,
    revision: int,
    decision_date: date,
    event_id: str,
    rules: DisclosureRules,
) -> PublicationRequest:
    return PublicationRequest(
        publication_id=publication_id,
        action=PublicationAction.WITHDRAW,
        kind=kind,
        revision=revision,
        decision_date=decision_date,
        deadline=_withdrawal_due(decision_date, rules),
        deadline_provisional=False,
        source_event_id=event_id,
        withdrawal_reason=WithdrawalReason.REVOKED,
    )


def _withdrawal_due(decision_date: date, rules: DisclosureRules) -> date:
    # "三日内": calendar days after the decision day (see the module docs).
    return decision_date + timedelta(days=rules.withdrawal_days)


_MOBILE_ANYWHERE = re.compile(r"1[3-9]\d(?:[ -]?\d{4}){2}")
"""A mobile number's shape even inside a longer run of digits: an id never carries one."""


def publication_id_for(prefix: str, *parts: str) -> str:
    """The stable publication id of a record identified by ``parts`` (e.g. a decision number).

    The website takes ids of 1-128 characters from ``A-Z a-z 0-9 . _ : -``, and decision numbers
    are Chinese (``东交罚〔2025〕101号``), so the id is ``<prefix>:<readable>.<digest>``: the ASCII
    letters and digits of the parts for people (``CF:2025-101``), and a digest of the parts for
    uniqueness (20 lower-case letters, 94 bits of SHA-256: letters only, so that no run of digits
    in it can look like a phone or ID number to the website's check). Parts are masked first: a
    licence number that is an ID number must not reach a URL, and a digest of an ID number could
    be reversed by trying every birth date. Should the readable part still look like personal
    data, it is left out.
    """
    masked = [mask_free_text(part) for part in parts]
    number = int.from_bytes(hashlib.sha256("\x1f".join(masked).encode()).digest(), "big")
    letters = []
    for _ in range(_ID_DIGEST_LETTERS):
        number, index = divmod(number, len(_ID_DIGEST_ALPHABET))
        letters.append(_ID_DIGEST_ALPHABET[index])
    digest = "".join(letters)
    readable = _ID_UNSAFE.sub("-", "-".join(masked))[:_ID_READABLE_MAX].strip("-")
    if not readable or find_personal_data(readable) or _MOBILE_ANYWHERE.search(readable):
        return f"{prefix}:{digest}"
    return f"{prefix}:{readable}.{digest}"


def _subject_fields(
    prefix: str, decision: PenaltyDecision | LicensingDecision
) -> dict[str, str | None]:
    """The 双公示 subject fields of either kind; a natural person's ID number masked."""
    natural = decision.subject_type is not SubjectType.LEGAL_PERSON
    id_number = (
        mask_identifier(decision.subject_id_number)
        if decision.subject_id_number and natural
        else None
    )
    return {
        f"{prefix}_XDR_MC": decision.subject_name,
        f"{prefix}_XDR_LB": SUBJECT_TYPE_LABELS[decision.subject_type],
        f"{prefix}_XDR_SHXYM": decision.subject_uscc,
        f"{prefix}_XDR_ZJLX": _ID_DOCUMENT_TYPE if id_number else None,
        f"{prefix}_XDR_ZJHM": id_number,
        f"{prefix}_FRDB": decision.legal_representative,
    }


def _kept_names(*names: str | None) -> tuple[str, ...]:
    return tuple(name for name in names if name)


def _redactions(*values: str | None) -> tuple[str, ...]:
    return tuple(value for value in values if value and value.strip())


# --- masking ------------------------------------------------------------------------------------

_FULL_WIDTH_DIGITS = {code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)} | {
    0xFF38: ord("X"),
    0xFF58: ord("x"),
}
_REDACTED = "***"
_NAME_PLACEHOLDER = "某某"

# Labelled addresses: the value runs to the next punctuation or space.
_ADDRESS = re.compile(
    r"(?P<label>家庭住址|现住址|户籍地址|户籍所在地|户籍地|居住地址|居住地|联系地址|住址|住所|地址)"
    r"(?P<sep>\s*(?:[：:为是]\s*)?)(?P<value>[^，,。；;、\s）)\]】]+)"
)
# Labelled contact numbers (a bare 7-8 digit local number is only recognised with its label).
_LABELLED_PHONE = re.compile(
    r"(?P<label>联系电话|联系方式|电话号码|手机号码|手机号|电话|手机|Tel|TEL|tel)"
    r"(?P<sep>\s*[：:]?\s*)(?P<value>\+?[0-9][0-9\- ]{5,}[0-9])"
)
_LABELLED_ACCOUNT = re.compile(
    r"(?P<label>银行账号|银行帐号|银行卡号|账号|帐号|账户|帐户|卡号)"
    r"(?P<sep>\s*[：:为是]?\s*)(?P<value>[0-9][0-9\- ]{5,}[0-9])"
)
# 18-character resident ID: 17 digits and a digit or X. An X ends the number, a digit must not
# be followed by another one.
_RESIDENT_ID = re.compile(r"(?<!\d)(?:\d{17}[Xx]|\d{18}(?!\d))")
_LEGACY_ID = re.compile(r"(?<!\d)\d{15}(?!\d)")
_MOBILE = re.compile(
    r"(?<!\d)(?:(?:\+|00)?86[ -]?)?(?P<head>1[3-9]\d)[ -]?(?P<mid>\d{4})[ -]?(?P<tail>\d{4})(?!\d)"
)
_LANDLINE = re.compile(r"(?<!\d)(?P<area>0\d{2,3})[ -]?(?P<number>\d{7,8})(?!\d)")
# Bank cards written in groups of four, and any other long run of digits.
_GROUPED_ACCOUNT = re.compile(r"(?<!\d)\d{4}(?:[ -]\d{4}){2,}(?:[ -]\d{1,4})?(?!\d)")
_LONG_DIGITS = re.compile(r"\d{12,}")

# Natural persons named by their role in a case (not the subject, not the legal representative).
_ROLES = (
    "实际驾驶人|驾驶人员|驾驶人|驾驶员|司机|车主|押运人员|押运员|装载人员|装卸人员|乘车人|乘客"
    "|证人|举报人|联系人|负责人|经办人|委托人|代理人"
)
# Characters that cannot start a name: verbs and particles that follow a role word.
_NOT_A_NAME_START = (
    "未在于将因系持为的所等和与及被是称擅拒无已经对自向从到把超违驾运载同现有不也就即均共"
    "身信姓签一二两多各其负存故使私非只仍又再曾"
)
# What can follow a name: punctuation, digits, Latin letters, and words that start a clause.
_AFTER_NAME = (
    r"[，,。；;：:、（(）)\[\]【】《》“”\"'‘’\s0-9A-Za-z*]"
    r"|驾驶|驾|于|在|将|因|系|持|未|为|的|所|等|和|与|及|被|是|称|指使|强令|擅自|拒|无|已|经|对"
    r"|自|向|从|到|把|超|违|运|载|同|现|作|有|不|也|就|即|均|共|身份|名下|名|之|所有"
    f"|[{''.join(sorted(set('鲁京津沪渝冀豫云辽黑湘皖新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼')))}]"
)
_HAN = r"[\u4e00-\u9fff·]"
_ROLE_NAME = re.compile(
    rf"(?P<label>{_ROLES})(?P<sep>\s*(?:姓名)?\s*[：:]?\s*(?:为|是)?\s*)"
    rf"(?P<name>(?![{_NOT_A_NAME_START}])"
    rf"(?:{_HAN}{{2,4}}?(?=(?:{_AFTER_NAME})|$)|{_HAN}{{2,3}}))"
)


def mask_free_text(
    text: str,
    *,
    keep_names: Iterable[str] = (),
    third_party_names: Iterable[str] = (),
    redact: Iterable[str] = (),
) -> str:
    """Mask personal data in free text before it is published (rules in the module docs).

    :param keep_names: names that are published anyway (the subject, the legal representative);
        a role-named person with one of these names is kept.
    :param third_party_names: names of other natural persons known to be in the case: each
        becomes ``某某`` wherever it occurs.
    :param redact: values to cut out wherever they occur (the subject's address and phone).
    """
    result = text.translate(_FULL_WIDTH_DIGITS)
    for value in sorted(set(redact), key=len, reverse=True):
        result = result.replace(value.translate(_FULL_WIDTH_DIGITS), _REDACTED)
    kept = frozenset(keep_names)
    for name in sorted(set(third_party_names) - kept, key=len, reverse=True):
        if name:
            result = result.replace(name, _NAME_PLACEHOLDER)
    result = _ADDRESS.sub(lambda m: m["label"] + m["sep"] + _REDACTED, result)
    result = _LABELLED_PHONE.sub(lambda m: m["label"] + m["sep"] + _mask_phone(m["value"]), result)
    result = _LABELLED_ACCOUNT.sub(lambda m: m["label"] + m["sep"] + _mask_tail(m["value"]), result)
    result = _RESIDENT_ID.sub(lambda m: mask_identifier(m[0].upper()), result)
    result = _LEGACY_ID.sub(lambda m: mask_identifier(m[0]), result)
    result = _MOBILE.sub(lambda m: f"{m['head']}****{m['tail']}", result)
    result = _LANDLINE.sub(lambda m: f"{m['area']}-{'*' * len(m['number'])}", result)
    result = _GROUPED_ACCOUNT.sub(lambda m: _mask_tail(m[0]), result)
    result = _LONG_DIGITS.sub(lambda m: _mask_tail(m[0]), result)

    def role_name(match: re.Match[str]) -> str:
        if match["name"] in kept:
            return match[0]
        return match["label"] + match["sep"] + _NAME_PLACEHOLDER

    return _ROLE_NAME.sub(role_name, result)


def _mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    mobile = _MOBILE.fullmatch(digits[-11:]) if len(digits) >= 11 else None
    if mobile is not None:
        return f"{mobile['head']}****{mobile['tail']}"
    landline = _LANDLINE.fullmatch(digits)
    if landline is not None:
        return f"{landline['area']}-{'*' * len(landline['number'])}"
    return "*" * len(digits)


def _mask_tail(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return "*" * (len(digits) - 4) + digits[-4:]


_ANY_DIGITS = re.compile(r"[0-9]+[Xx]?")
_FOREIGNER_PREFIX = "9"


def _looks_like_resident_id(candidate: str) -> bool:
    """A region code and a calendar birth date where GB 11643 puts them, whatever the check
    digit (a mistyped ID number is personal data all the same); not a valid USCC. The foreign
    permanent residence ID has the same layout behind a leading 9."""
    region = candidate[:2] in PROVINCE_CODES or (
        candidate[0] == _FOREIGNER_PREFIX and candidate[1:3] in PROVINCE_CODES
    )
    if not region or check_uscc(candidate) is None:
        return False
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    return EARLIEST_BIRTH_DATE.year <= born.year < _LAST_BIRTH_YEAR


_LAST_BIRTH_YEAR = 2100


def find_personal_data(text: str) -> list[str]:
    """What in ``text`` still looks like unmasked personal data: resident ID numbers (any 18
    consecutive characters of a digit run with a region code and a birth date) and mobile
    numbers. Empty when clean.

    A last line of defence for what leaves the process, at least as strict as the website's own
    check; the findings are masked, for messages.
    """
    found: list[str] = []
    normalised = text.translate(_FULL_WIDTH_DIGITS).upper()
    for run in _ANY_DIGITS.finditer(normalised):
        value = run[0]
        for start in range(len(value) - 17):
            candidate = value[start : start + 18]
            if candidate[:17].isdigit() and _looks_like_resident_id(candidate):
                found.append(mask_identifier(candidate))
    for mobile in _MOBILE.finditer(normalised):
        found.append(f"{mobile['head']}****{mobile['tail']}")
    return found


# --- serialisation ------------------------------------------------------------------------------

REQUEST_SCHEMA_VERSION = 1
"""Version of the dict :func:`request_to_dict` writes."""


def request_to_dict(request: PublicationRequest) -> dict[str, Any]:
    """A JSON-safe dict of ``request`` (dates as ``YYYY-MM-DD``, enums as their values)."""
    return {
        "schema": REQUEST_SCHEMA_VERSION,
        "publication_id": request.publication_id,
        "action": request.action.value,
        "kind": request.kind.value,
        "revision": request.revision,
        "decision_date": request.decision_date.isoformat(),
        "deadline": request.deadline.isoformat(),
        "deadline_provisional": request.deadline_provisional,
        "source_event_id": request.source_event_id,
        "fields": dict(request.fields),
        "subject_name": request.subject_name,
        "subject_code": request.subject_code,
        "plate": request.plate,
        "publication_end": _iso_or_none(request.publication_end),
        "tier": request.tier.value if request.tier is not None else None,
        "withdrawal_reason": (
            request.withdrawal_reason.value if request.withdrawal_reason is not None else None
        ),
        "policy_version": request.policy_version,
    }


def request_from_dict(data: Mapping[str, Any]) -> PublicationRequest:
    """The request :func:`request_to_dict` wrote.

    :raises RequestFormatError: ``data`` is not such a dict.
    """
    try:
        if data.get("schema") != REQUEST_SCHEMA_VERSION:
            raise RequestFormatError(f"unknown schema {data.get('schema')!r}")
        raw_fields = data["fields"]
        if not isinstance(raw_fields, Mapping) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in raw_fields.items()
        ):
            raise RequestFormatError("fields must map strings to strings or null")
        revision = data["revision"]
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise RequestFormatError(f"revision must be a non-negative integer, got {revision!r}")
        provisional = data["deadline_provisional"]
        if not isinstance(provisional, bool):
            raise RequestFormatError("deadline_provisional must be a boolean")
        return PublicationRequest(
            publication_id=_text(data, "publication_id"),
            action=PublicationAction(data["action"]),
            kind=PublicationKind(data["kind"]),
            revision=revision,
            decision_date=date.fromisoformat(_text(data, "decision_date")),
            deadline=date.fromisoformat(_text(data, "deadline")),
            deadline_provisional=provisional,
            source_event_id=_text(data, "source_event_id"),
            fields=dict(raw_fields),
            subject_name=_text(data, "subject_name"),
            subject_code=_text(data, "subject_code"),
            plate=_optional_text(data, "plate"),
            publication_end=_optional_date(data, "publication_end"),
            tier=SeverityTier(data["tier"]) if data.get("tier") is not None else None,
            withdrawal_reason=(
                WithdrawalReason(data["withdrawal_reason"])
                if data.get("withdrawal_reason") is not None
                else None
            ),
            policy_version=_optional_text(data, "policy_version"),
        )
    except RequestFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RequestFormatError(f"not a publication request: {error!r}") from error


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise RequestFormatError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RequestFormatError(f"{key} must be a string or null, got {type(value).__name__}")
    return value


def _optional_date(data: Mapping[str, Any], key: str) -> date | None:
    value = _optional_text(data, key)
    return date.fromisoformat(value) if value is not None else None


def _iso_or_none(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None
