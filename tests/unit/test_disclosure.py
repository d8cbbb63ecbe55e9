"""双公示 requests: deadlines, units, masking, what is not published, revisions, periods."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.disclosure import (
    DEFAULT_DISCLOSURE_RULES,
    DisclosureRules,
    NotPublished,
    PublicationAction,
    PublicationKind,
    PublicationRequest,
    RequestFormatError,
    SeverityTier,
    WithdrawalReason,
    add_months,
    find_personal_data,
    mask_free_text,
    publication_for_licensing,
    publication_for_penalty,
    publication_id_for,
    request_from_dict,
    request_to_dict,
    severity_tier,
    yuan_to_wan,
)
from processors.identifiers import resident_id_check_digit
from processors.model import (
    ChangeType,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    SubjectType,
    ViolationCode,
)
from processors.policy import parse_policy_book
from processors.workdays import CHINESE_CALENDAR

D = date.fromisoformat
REPO = Path(__file__).resolve().parents[2]
BOOK = parse_policy_book((REPO / "config" / "policy.yaml").read_text(encoding="utf-8"))


def resident_id(first17: str) -> str:
    """A valid 18-digit resident ID number."""
    return first17 + resident_id_check_digit(first17)


DRIVER_ID = resident_id("37152419850304123")
SUBJECT_ID = resident_id("37152419900101456")
CARRIER_USCC = "91371524MA3C00001X"


def penalty(**changes: object) -> PenaltyDecision:
    """A general-procedure 2,000-yuan fine against a carrier, decided 2025-09-26."""
    base = PenaltyDecision(
        event_id="pen-1",
        decision_number="东交罚〔2025〕101号",
        revision=0,
        change_type=ChangeType.ISSUED,
        subject_name="东阿县顺达运输有限公司",
        subject_type=SubjectType.LEGAL_PERSON,
        violation_code=ViolationCode.OVERLOAD_TRANSPORT,
        violation_type="违法超限运输",
        facts="2025年9月20日，驾驶人张三驾驶鲁P12345号货车超限运输。",
        legal_basis="《公路安全保护条例》第六十四条",
        penalty_categories=(PenaltyCategory.FINE,),
        content="罚款2000元",
        fine_amount_yuan=Decimal(2000),
        decision_date=D("2025-09-26"),
        authority="东阿县交通运输局",
        authority_code="11371524004353001R",
        procedure=Procedure.GENERAL,
        subject_uscc=CARRIER_USCC,
        legal_representative="王五",
        plate_number="鲁P12345",
        plate_colour=PlateColour.YELLOW,
        driver_id_number=DRIVER_ID,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def person_penalty(**changes: object) -> PenaltyDecision:
    """The same fine against the driver, a natural person."""
    return penalty(
        subject_name="张三",
        subject_type=SubjectType.NATURAL_PERSON,
        subject_uscc=None,
        subject_id_number=SUBJECT_ID,
        legal_representative=None,
        driver_id_number=None,
        subject_address="山东省聊城市东阿县铜城街道幸福路12号",
        subject_phone="13912345678",
        **changes,
    )


def licence(**changes: object) -> LicensingDecision:
    """A driver qualification whose number is the holder's ID number."""
    base = LicensingDecision(
        event_id="lic-1",
        licence_number=SUBJECT_ID,
        document_number="东交运许〔2025〕7号",
        document_name="道路运输从业人员从业资格证核发决定书",
        revision=0,
        licence_type=LicenceType.DRIVER_QUALIFICATION,
        status=LicenceStatus.GRANTED,
        subject_name="张三",
        subject_type=SubjectType.NATURAL_PERSON,
        licence_category="普通",
        certificate_name="道路运输从业人员从业资格证",
        content=f"核发从业资格证，证号{SUBJECT_ID}",
        decision_date=D("2025-09-26"),
        valid_from=D("2025-09-26"),
        valid_until=D("2031-09-25"),
        authority="东阿县交通运输局",
        authority_code="11371524004353001R",
        subject_id_number=SUBJECT_ID,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def published(result: PublicationRequest | NotPublished) -> PublicationRequest:
    assert isinstance(result, PublicationRequest), result
    return result


def all_output_text(request: PublicationRequest) -> str:
    """Every string the request would send anywhere."""
    return json.dumps(request_to_dict(request), ensure_ascii=False)


# --- deadlines ----------------------------------------------------------------------------------

DEADLINES = [
    # decision date, due, provisional
    # RULES.md §1 worked example: 国庆 10-01..10-08 off, Sun 09-28 and Sat 10-11 make-up days.
    ("2025-09-26", "2025-10-13", False),
    # 春节 2026: 02-15..02-23 off, Sat 02-14 and Sat 02-28 make-up days.
    ("2026-02-13", "2026-03-02", False),
    # Crosses into 2027, which chinese_calendar does not cover: every unknown day counted as a
    # working day (New Year's Day and the weekend included), so the due date is early.
    ("2026-12-28", "2027-01-04", True),
    ("2026-12-31", "2027-01-07", True),
    # Inside a covered year, a plain week.
    ("2025-11-03", "2025-11-12", False),
]


@pytest.mark.parametrize(("decided", "due", "provisional"), DEADLINES)
def test_deadline_is_seven_working_days_after_the_decision(
    decided: str, due: str, provisional: bool
) -> None:
    """A penalty is due 7 working days after its decision date; unknown years are provisional."""
    request = published(publication_for_penalty(penalty(decision_date=D(decided)), policy=BOOK))
    assert (request.deadline, request.deadline_provisional) == (D(due), provisional)


def test_licensing_deadline_is_seven_working_days_after_the_decision() -> None:
    """Licensing decisions have the same 7-working-day deadline."""
    request = publication_for_licensing(licence(decision_date=D("2026-02-13")))
    assert (request.deadline, request.deadline_provisional) == (D("2026-03-02"), False)


# --- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yuan", "wan"),
    [
        ("2000", "0.200000"),  # RULES.md §1 sample: "罚款2000元" is CF_NR_FK 0.2
        ("0", "0.000000"),
        ("30000", "3.000000"),
        ("12345.67", "1.234567"),
        ("0.01", "0.000001"),  # one fen is the smallest amount: exactly representable
        ("0.005", "0.000001"),  # half a fen rounds half up
        ("1000000", "100.000000"),
    ],
)
def test_amounts_are_exported_in_wan_yuan_with_six_places(yuan: str, wan: str) -> None:
    """CF_NR_FK and CF_NR_WFFF are 万元, six decimal places."""
    assert yuan_to_wan(Decimal(yuan)) == wan


def test_fine_and_confiscation_fields_are_in_wan_yuan() -> None:
    """The request carries the fine and the confiscated amount in 万元."""
    request = published(
        publication_for_penalty(penalty(confiscated_amount_yuan=Decimal("1500.50")), policy=BOOK)
    )
    assert request.fields["CF_NR_FK"] == "0.200000"
    assert request.fields["CF_NR_WFFF"] == "0.150050"


# --- masking ------------------------------------------------------------------------------------

ID_A = resident_id("37152419900101123")
ID_X = resident_id("11010519491231002")  # check character X
LEGACY_ID = "371524900101123"

MASKING = [
    # input, expected
    (f"身份证号{ID_A}。", f"身份证号{ID_A[:3]}*************{ID_A[-2:]}。"),
    (f"身份证号：{ID_X}", f"身份证号：110*************{ID_X[-2:]}"),
    (f"身份证号{ID_X.lower()}", f"身份证号110*************{ID_X[-2:]}"),
    (f"旧身份证号{LEGACY_ID}", "旧身份证号371**********23"),
    ("电话13812345678", "电话138****5678"),
    ("手机：138 1234 5678，", "手机：138****5678，"),
    ("联系+86 13812345678", "联系138****5678"),
    ("电话0635-3281234", "电话0635-*******"),
    ("办公室06353281234", "办公室0635-*******"),
    ("联系电话：3281234", "联系电话：*******"),
    # Full-width digits are read as digits.
    ("电话１３８１２３４５６７８", "电话138****5678"),
    # An ID number glued to a mobile number: both masked.
    (f"{ID_X}13812345678", f"110*************{ID_X[-2:]}138****5678"),
    # Glued without an X, the whole 29-digit run is masked but its last four.
    (f"{ID_A}13812345678", "*************************5678"),
    ("住址：山东省聊城市东阿县铜城街道幸福路12号，", "住址：***，"),
    ("家庭住址为东阿县某村3组。", "家庭住址为***。"),
    ("开户银行账号6222021234567890123", "开户银行账号***************0123"),
    ("卡号 6222 0212 3456 7890 123", "卡号 ***************0123"),
    ("转入6222 0212 3456 7890", "转入************7890"),
    ("检测时间20250926123045", "检测时间**********3045"),
    # Third parties named by role.
    ("驾驶人张三驾驶鲁P12345号货车", "驾驶人某某驾驶鲁P12345号货车"),
    ("驾驶员：李四，", "驾驶员：某某，"),
    ("驾驶人为王在明驾驶该车", "驾驶人为某某驾驶该车"),
    ("车主姓名：赵六，", "车主姓名：某某，"),
    ("押运员欧阳明明在场", "押运员某某在场"),
    ("其雇佣的司机张三丰", "其雇佣的司机某某"),
    # Not a name: a role word followed by a verb is left alone.
    ("驾驶人未按规定申请超限运输许可", "驾驶人未按规定申请超限运输许可"),
    ("驾驶人某某驾驶", "驾驶人某某驾驶"),  # already masked: unchanged
    # Untouched: dates, amounts, plates, weights, a USCC (an organisation's code is public).
    ("2025-09-26 罚款2000元 鲁P12345 49000kg", "2025-09-26 罚款2000元 鲁P12345 49000kg"),
    (f"统一社会信用代码{CARRIER_USCC}", f"统一社会信用代码{CARRIER_USCC}"),
]


@pytest.mark.parametrize(("text", "expected"), MASKING)
def test_mask_free_text(text: str, expected: str) -> None:
    """Free text loses ID numbers, phones, addresses, accounts and third parties' names."""
    assert mask_free_text(text) == expected


def test_mask_free_text_keeps_the_subject_and_masks_named_third_parties() -> None:
    """Names that are published anyway stay; named third parties become 某某 anywhere."""
    text = "负责人李明指使驾驶员张三超限，司机王二麻子在场"
    masked = mask_free_text(text, keep_names=("李明",), third_party_names=("王二麻子",))
    assert masked == "负责人李明指使驾驶员某某超限，司机某某在场"


def test_mask_free_text_cuts_out_given_values() -> None:
    """The subject's address and phone are cut out wherever they occur."""
    masked = mask_free_text("当事人在幸福路12号门前装货", redact=("幸福路12号",))
    assert masked == "当事人在***门前装货"


def test_birth_date_never_survives_masking() -> None:
    """The masked ID shows neither the birth date nor enough to rebuild it."""
    masked = mask_free_text(ID_A)
    assert "19900101" not in masked
    assert masked.count("*") == 13


def test_request_fields_are_masked() -> None:
    """A person's ID, phone and address never reach the request; third parties lose names."""
    decision = person_penalty(
        facts=(
            f"当事人张三（身份证号{SUBJECT_ID}，住址：东阿县幸福路12号，电话13912345678）"
            f"驾驶鲁P12345超限运输，车主李四在场，驾驶证号{DRIVER_ID}。"
        ),
        remarks="联系电话0635-3281234",
    )
    request = published(publication_for_penalty(decision, policy=BOOK))
    text = all_output_text(request)
    for secret in (SUBJECT_ID, DRIVER_ID, "13912345678", "幸福路12号", "李四", "3281234"):
        assert secret not in text
    assert request.fields["CF_XDR_ZJHM"] == f"371*************{SUBJECT_ID[-2:]}"
    assert request.fields["CF_XDR_ZJLX"] == "身份证"
    assert request.subject_code == request.fields["CF_XDR_ZJHM"]
    assert request.subject_name == "张三"  # the subject is published by name
    assert "当事人张三" in (request.fields["CF_SY"] or "")
    assert "车主某某在场" in (request.fields["CF_SY"] or "")
    assert find_personal_data(text) == []


def test_licence_numbers_that_are_id_numbers_are_masked_in_fields_and_id() -> None:
    """A qualification number equal to the holder's ID is masked, in the id too."""
    request = publication_for_licensing(licence())
    assert SUBJECT_ID not in all_output_text(request)
    assert re.fullmatch(rf"XK:371-{SUBJECT_ID[-2:]}-2025-7\.[a-z]{{20}}", request.publication_id)
    assert request.fields["XK_XKBH"] == f"371*************{SUBJECT_ID[-2:]}"


def test_penalty_fields_follow_the_standard() -> None:
    """The CF_ fields carry labels, joined categories and ISO dates."""
    decision = penalty(
        penalty_categories=(PenaltyCategory.FINE, PenaltyCategory.CONFISCATE_ILLEGAL_GAINS),
        remarks="无",
    )
    request = published(publication_for_penalty(decision, policy=BOOK))
    assert re.fullmatch(r"CF:2025-101\.[a-z]{20}", request.publication_id)
    assert request.kind is PublicationKind.PENALTY
    assert request.action is PublicationAction.PUBLISH
    assert request.fields["CF_XDR_LB"] == "法人及非法人组织"
    assert request.fields["CF_XDR_SHXYM"] == CARRIER_USCC
    assert request.fields["CF_XDR_ZJHM"] is None
    assert request.fields["CF_FRDB"] == "王五"
    assert request.fields["CF_CFLB"] == "罚款、没收违法所得"
    assert request.fields["CF_JDRQ"] == "2025-09-26"
    assert request.fields["CF_SJLY"] == "东阿县交通运输局"
    assert request.fields["CF_SY"] == "2025年9月20日，驾驶人某某驾驶鲁P12345号货车超限运输。"
    assert request.subject_code == CARRIER_USCC
    assert request.plate == "鲁P12345"


WEBSITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


@pytest.mark.parametrize(
    ("parts", "readable"),
    [
        (("东交罚〔2025〕101号",), "CF:2025-101."),
        (("东交罚〔2025〕102号",), "CF:2025-102."),
        (("东交罚[2025]101号",), "CF:2025-101."),  # another spelling: another digest
        (("第" * 200,), "CF:"),  # no ASCII at all: the digest alone
        (("A/B?C#D" * 40,), "CF:A-B-C-DA-B-C-DA-B-C-D"),  # URL characters replaced, cut short
    ],
)
def test_publication_ids_are_stable_website_safe_and_distinct(
    parts: tuple[str, ...], readable: str
) -> None:
    """Ids match the website's pattern, keep the ASCII for people, and differ per number."""
    publication_id = publication_id_for("CF", *parts)
    assert WEBSITE_ID.fullmatch(publication_id)
    assert publication_id.startswith(readable)
    assert publication_id == publication_id_for("CF", *parts)
    assert publication_id != publication_id_for("CF", *parts, "x")


@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("东交罚〔〕号第0123456789-/X")), min_size=1, max_size=30)
)
def test_publication_ids_never_look_like_personal_data(number: str) -> None:
    """Digests are letters: no id can trip the website's phone or ID number check."""
    publication_id = publication_id_for("CF", number)
    assert WEBSITE_ID.fullmatch(publication_id)
    assert find_personal_data(publication_id) == []
    assert not re.search(r"1[3-9]\d(?:[ -]?\d{4}){2}", publication_id)


def test_ids_of_different_spellings_differ() -> None:
    """Two decision numbers with the same digits still get different ids."""
    assert publication_id_for("CF", "东交罚〔2025〕101号") != publication_id_for(
        "CF", "东交罚[2025]101号"
    )


def test_subject_code_falls_back_to_the_plate_and_then_to_none() -> None:
    """The website requires a subject code: USCC, masked ID, plate, or 无."""
    no_code = penalty(subject_uscc=None)
    assert published(publication_for_penalty(no_code, policy=BOOK)).subject_code == "鲁P12345"
    neither = penalty(subject_uscc=None, plate_number=None)
    assert published(publication_for_penalty(neither, policy=BOOK)).subject_code == "无"


# --- not published ------------------------------------------------------------------------------

NOT_PUBLISHED = [
    # decision changes, reason code
    ({"confidential": True}, "CONFIDENTIAL"),
    ({"subject_is_minor": True}, "SUBJECT_IS_MINOR"),
    ({"penalty_categories": (PenaltyCategory.WARNING,), "fine_amount_yuan": Decimal(0)},
     "WARNING_ONLY"),
    ({"procedure": Procedure.SIMPLE, "fine_amount_yuan": Decimal(200)}, "SIMPLE_PROCEDURE"),
    # From 2026-04-01 the 轻微 tier is not published in principle (NDRC Order 2025 No. 36).
    ({"penalty_categories": (PenaltyCategory.PUBLIC_CRITICISM,), "fine_amount_yuan": Decimal(0),
      "decision_date": D("2026-04-01")}, "TIER_NOT_PUBLISHED"),
    # Confidentiality wins over everything else.
    ({"confidential": True, "subject_is_minor": True, "procedure": Procedure.SIMPLE},
     "CONFIDENTIAL"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "code"), NOT_PUBLISHED)
def test_decisions_that_are_not_published(changes: dict[str, object], code: str) -> None:
    """Confidential, minors, warning only, simple procedure, minor tier after 2026-04-01."""
    result = publication_for_penalty(penalty(**changes), policy=BOOK)
    assert isinstance(result, NotPublished)
    assert result.reason_code == code
    assert result.publication_id == publication_id_for("CF", "东交罚〔2025〕101号")


def test_public_criticism_before_2026_04_01_is_still_published() -> None:
    """Under Order No. 58 the 轻微 tier has no verified rule: it is published, until withdrawn."""
    decision = penalty(
        penalty_categories=(PenaltyCategory.PUBLIC_CRITICISM,),
        fine_amount_yuan=Decimal(0),
        decision_date=D("2026-03-31"),
    )
    request = published(publication_for_penalty(decision, policy=BOOK))
    assert (request.tier, request.publication_end) == (SeverityTier.MINOR, None)


def test_rules_can_publish_warnings_and_simple_procedure() -> None:
    """The exclusions follow the rules passed in."""
    rules = DisclosureRules(warning_only_published=True, simple_procedure_published=True)
    warning = penalty(penalty_categories=(PenaltyCategory.WARNING,), fine_amount_yuan=Decimal(0))
    simple = penalty(procedure=Procedure.SIMPLE, fine_amount_yuan=Decimal(200))
    assert isinstance(
        publication_for_penalty(warning, policy=BOOK, rules=rules), PublicationRequest
    )
    assert isinstance(publication_for_penalty(simple, policy=BOOK, rules=rules), PublicationRequest)


# --- tiers and periods --------------------------------------------------------------------------

TIERS = [
    # categories, fine yuan, procedure, tier
    ((PenaltyCategory.FINE,), "2000", Procedure.GENERAL, SeverityTier.GENERAL),
    ((PenaltyCategory.FINE,), "49999.99", Procedure.GENERAL, SeverityTier.GENERAL),
    ((PenaltyCategory.FINE,), "50000", Procedure.GENERAL, SeverityTier.SERIOUS),  # threshold: >=
    ((PenaltyCategory.CONFISCATE_ILLEGAL_PROPERTY,), "0", Procedure.GENERAL, SeverityTier.GENERAL),
    ((PenaltyCategory.SUSPEND_LICENCE,), "0", Procedure.GENERAL, SeverityTier.GENERAL),
    ((PenaltyCategory.FINE, PenaltyCategory.REVOKE_LICENCE), "1000", Procedure.GENERAL,
     SeverityTier.SERIOUS),
    ((PenaltyCategory.RESTRICT_PRACTICE,), "0", Procedure.GENERAL, SeverityTier.SERIOUS),
    ((PenaltyCategory.SUSPENSION_ORDER,), "0", Procedure.GENERAL, SeverityTier.SERIOUS),
    ((PenaltyCategory.WARNING,), "0", Procedure.GENERAL, SeverityTier.MINOR),
    ((PenaltyCategory.WARNING, PenaltyCategory.PUBLIC_CRITICISM), "0", Procedure.GENERAL,
     SeverityTier.MINOR),
    # A warning with a fine is no longer minor.
    ((PenaltyCategory.WARNING, PenaltyCategory.FINE), "500", Procedure.GENERAL,
     SeverityTier.GENERAL),
    ((PenaltyCategory.FINE,), "200", Procedure.SIMPLE, SeverityTier.MINOR),
]  # fmt: skip


@pytest.mark.parametrize(("categories", "fine", "procedure", "tier"), TIERS)
def test_severity_tier(
    categories: tuple[PenaltyCategory, ...], fine: str, procedure: Procedure, tier: SeverityTier
) -> None:
    """Serious, general and minor follow the documented local choice."""
    decision = penalty(
        penalty_categories=categories, fine_amount_yuan=Decimal(fine), procedure=procedure
    )
    assert severity_tier(decision, DEFAULT_DISCLOSURE_RULES) is tier


PERIODS = [
    # decision date, categories, fine, publication end, policy version
    # Before 2026-04-01 (Order No. 58): periods not verified, published until withdrawn.
    ("2026-03-31", (PenaltyCategory.FINE,), "2000", None, "2023-05-01"),
    ("2026-03-31", (PenaltyCategory.REVOKE_LICENCE,), "0", None, "2023-05-01"),
    ("2022-06-01", (PenaltyCategory.FINE,), "2000", None, "2016-09-21"),
    # From 2026-04-01 (Order 2025 No. 36): 一般 at most 12 months, 严重 at most 36.
    ("2026-04-01", (PenaltyCategory.FINE,), "2000", "2027-04-01", "2026-04-01"),
    ("2026-04-01", (PenaltyCategory.REVOKE_LICENCE,), "0", "2029-04-01", "2026-04-01"),
    ("2026-04-01", (PenaltyCategory.FINE,), "80000", "2029-04-01", "2026-04-01"),
    # Month arithmetic clamps to the end of the month (2028 is a leap year).
    ("2027-02-28", (PenaltyCategory.FINE,), "2000", "2028-02-28", "2026-04-01"),
    ("2026-08-31", (PenaltyCategory.REVOKE_LICENCE,), "0", "2029-08-31", "2026-04-01"),
]  # fmt: skip


@pytest.mark.parametrize(("decided", "categories", "fine", "end", "version"), PERIODS)
def test_publication_end_by_tier_and_regime(
    decided: str,
    categories: tuple[PenaltyCategory, ...],
    fine: str,
    end: str | None,
    version: str,
) -> None:
    """The end is the tier's longest period in the regime in force on the decision date."""
    decision = penalty(
        decision_date=D(decided), penalty_categories=categories, fine_amount_yuan=Decimal(fine)
    )
    request = published(publication_for_penalty(decision, policy=BOOK))
    assert request.publication_end == (D(end) if end else None)
    assert request.fields["CF_GSJZQ"] == end
    assert request.policy_version == version


def test_without_a_policy_book_there_is_no_end() -> None:
    """No book, no regime: published until withdrawn."""
    request = published(publication_for_penalty(penalty(decision_date=D("2026-05-06"))))
    assert (request.publication_end, request.policy_version) == (None, None)


def test_before_the_first_policy_version_there_is_no_end() -> None:
    """A decision older than every policy version is still published, without an end."""
    request = published(
        publication_for_penalty(penalty(decision_date=D("2015-05-06")), policy=BOOK)
    )
    assert request.publication_end is None


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [("2026-01-31", 1, "2026-02-28"), ("2028-01-31", 1, "2028-02-29"),
     ("2026-11-15", 3, "2027-02-15"), ("2026-04-01", 36, "2029-04-01"),
     ("2026-12-31", 12, "2027-12-31")],
)  # fmt: skip
def test_add_months(day: str, months: int, expected: str) -> None:
    """Calendar months, clamped to the month's end."""
    assert add_months(D(day), months) == D(expected)


# --- revisions and withdrawals ------------------------------------------------------------------


def test_a_modified_decision_replaces_with_a_higher_revision_within_three_days() -> None:
    """A change is published under the same id, one revision up, due in 3 calendar days."""
    original = published(publication_for_penalty(penalty(), policy=BOOK))
    changed = published(
        publication_for_penalty(
            penalty(
                event_id="pen-2",
                revision=1,
                change_type=ChangeType.MODIFIED,
                content="罚款1000元",
                fine_amount_yuan=Decimal(1000),
                decision_date=D("2025-09-30"),  # the day of the change
            ),
            policy=BOOK,
        )
    )
    assert changed.publication_id == original.publication_id
    assert changed.revision > original.revision
    assert changed.action is PublicationAction.PUBLISH
    assert changed.fields["CF_NR_FK"] == "0.100000"
    # 三日内, calendar days: 10-03 falls in the 国庆 holiday and still counts.
    assert (changed.deadline, changed.deadline_provisional) == (D("2025-10-03"), False)


def test_a_revoked_decision_is_withdrawn_within_three_calendar_days() -> None:
    """Revocation gives a withdrawal, reason revoked, due 3 days after the revocation."""
    request = published(
        publication_for_penalty(
            penalty(
                event_id="pen-3",
                revision=2,
                change_type=ChangeType.REVOKED,
                decision_date=D(
                    "2026-12-30"
                ),  # into uncovered 2027: calendar days, not provisional
            ),
            policy=BOOK,
        )
    )
    assert request.action is PublicationAction.WITHDRAW
    assert request.withdrawal_reason is WithdrawalReason.REVOKED
    assert (request.revision, request.deadline, request.deadline_provisional) == (
        2,
        D("2027-01-02"),
        False,
    )
    assert request.publication_id == publication_id_for("CF", "东交罚〔2025〕101号")
    assert dict(request.fields) == {}
    assert request.subject_name == ""


def test_a_modified_decision_that_is_no_longer_publishable_is_withdrawn() -> None:
    """Reduced to a warning: the earlier revision must come down."""
    request = published(
        publication_for_penalty(
            penalty(
                revision=1,
                change_type=ChangeType.MODIFIED,
                penalty_categories=(PenaltyCategory.WARNING,),
                fine_amount_yuan=Decimal(0),
            ),
            policy=BOOK,
        )
    )
    assert request.action is PublicationAction.WITHDRAW
    assert request.deadline == D("2025-09-29")


def test_a_licence_status_change_is_a_higher_revision() -> None:
    """A suspended licence is published with its new status and revision."""
    request = publication_for_licensing(
        licence(revision=1, status=LicenceStatus.SUSPENDED, event_id="lic-2")
    )
    assert (request.revision, request.fields["XK_ZT"]) == (1, "暂停")
    assert request.kind is PublicationKind.LICENSING
    assert request.publication_end is None


# --- serialisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        published(publication_for_penalty(person_penalty(), policy=BOOK)),
        published(publication_for_penalty(penalty(change_type=ChangeType.REVOKED), policy=BOOK)),
        publication_for_licensing(licence()),
        published(publication_for_penalty(penalty(decision_date=D("2026-12-31")), policy=BOOK)),
    ],
)
def test_requests_round_trip_through_json(request_: PublicationRequest) -> None:
    """request_from_dict(json(request_to_dict(r))) == r."""
    text = json.dumps(request_to_dict(request_), ensure_ascii=False)
    assert request_from_dict(json.loads(text)) == request_


@pytest.mark.parametrize(
    "damage",
    [
        {"schema": 2},
        {"revision": -1},
        {"revision": True},
        {"action": "PUBLISHED"},
        {"deadline": "2025/10/13"},
        {"fields": {"CF_NR_FK": 0.2}},
        {"deadline_provisional": "no"},
        {"subject_name": None},
    ],
)
def test_malformed_request_dicts_are_refused(damage: dict[str, object]) -> None:
    """Anything but what request_to_dict writes raises RequestFormatError."""
    data = request_to_dict(published(publication_for_penalty(penalty(), policy=BOOK)))
    data.update(damage)
    with pytest.raises(RequestFormatError):
        request_from_dict(data)


def test_only_a_withdrawal_carries_a_reason() -> None:
    """The request type refuses a publication with a withdrawal reason."""
    request = published(publication_for_penalty(penalty(), policy=BOOK))
    with pytest.raises(ValueError, match="withdrawal"):
        dataclasses.replace(request, withdrawal_reason=WithdrawalReason.REVOKED)


# --- property: nothing personal leaves ----------------------------------------------------------

_first17 = st.builds(
    lambda region, year, month, day, serial: f"{region}{year:04d}{month:02d}{day:02d}{serial:03d}",
    st.sampled_from(["371524", "110105", "440305", "530102"]),
    st.integers(1940, 2008),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 999),
)
resident_ids = _first17.map(resident_id)
mobiles = st.builds(
    lambda head, rest: f"1{head}{rest:09d}", st.sampled_from("3456789"), st.integers(0, 10**9 - 1)
)
fillers = st.text(
    alphabet=st.sampled_from(list("驾驶人张三车主某住址：，。号电话身份证0123456789 -X鲁P")),
    max_size=12,
)
separators = st.sampled_from(["", " ", "，", "-", "号", "X", "0"])


@st.composite
def texts_with_secrets(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Free text with resident IDs and mobile numbers at random places, and the secrets."""
    secrets = draw(st.lists(st.one_of(resident_ids, mobiles), min_size=1, max_size=4))
    parts = [draw(fillers)]
    for secret in secrets:
        parts += [draw(separators), secret, draw(separators), draw(fillers)]
    return "".join(parts), secrets


_ID_WINDOW = re.compile(r"(?=(\d{17}[\dX]))")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    facts=texts_with_secrets(),
    remarks=texts_with_secrets(),
    subject_id=resident_ids,
    phone=mobiles,
    natural=st.booleans(),
    revoked=st.booleans(),
)
def test_no_request_field_contains_an_unmasked_id_or_mobile(
    facts: tuple[str, list[str]],
    remarks: tuple[str, list[str]],
    subject_id: str,
    phone: str,
    natural: bool,
    revoked: bool,
) -> None:
    """No output field ever holds a valid resident ID or an 11-digit mobile from the input."""
    decision = penalty(
        facts=facts[0],
        remarks=remarks[0],
        content=f"罚款2000元，{remarks[0]}",
        subject_type=SubjectType.NATURAL_PERSON if natural else SubjectType.LEGAL_PERSON,
        subject_id_number=subject_id if natural else None,
        subject_uscc=None if natural else CARRIER_USCC,
        subject_phone=phone,
        change_type=ChangeType.REVOKED if revoked else ChangeType.ISSUED,
    )
    results = [
        publication_for_penalty(decision, CHINESE_CALENDAR, BOOK),
        publication_for_licensing(
            licence(licence_number=subject_id, content=facts[0], remarks=remarks[0])
        ),
    ]
    secrets = [*facts[1], *remarks[1], subject_id, phone]
    for result in results:
        assert isinstance(result, PublicationRequest)
        output = all_output_text(result)
        for secret in secrets:
            assert secret not in output
        assert find_personal_data(output) == []
        for window in _ID_WINDOW.findall(output):
            assert resident_id(window[:17]) != window, "a valid resident ID is in the output"
