"""Domain values of credit-transport as frozen types.

These are the types the pure rules in ``processors/`` work on. Avro dicts are mapped to them in
one place (``streams/codecs.py``); nothing in ``processors/`` sees wire data.

Money is held in ``Decimal`` yuan (never floats); dates of decisions are ``date``; instants are
timezone-aware ``datetime`` in UTC. Field names follow ``shared/domain/GLOSSARY.md``; the 双公示
(disclosure) standard field code is given beside a field where one exists (RULES.md §1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal


class PlateColour(enum.StrEnum):
    """车牌颜色 (plate colour). Trucks carry yellow plates; green is new-energy."""

    BLUE = "BLUE"
    YELLOW = "YELLOW"
    GREEN = "GREEN"
    YELLOW_GREEN = "YELLOW_GREEN"
    WHITE = "WHITE"
    BLACK = "BLACK"


class StationType(enum.StrEnum):
    """Where a weight was measured."""

    FIXED_STATION_PRECISE = "FIXED_STATION_PRECISE"
    """超限检测站精检: a fixed weigh station's precise weighing, a confirmed measurement."""
    WEIGH_IN_MOTION = "WEIGH_IN_MOTION"
    """不停车检测: an in-motion pre-check; never a violation by itself (RULES.md §2)."""


class SubjectType(enum.StrEnum):
    """行政相对人类别 (CF_XDR_LB / XK_XDR_LB)."""

    LEGAL_PERSON = "LEGAL_PERSON"
    """法人及非法人组织."""
    NATURAL_PERSON = "NATURAL_PERSON"
    """自然人."""
    INDIVIDUAL_BUSINESS = "INDIVIDUAL_BUSINESS"
    """个体工商户."""


class SubjectKind(enum.StrEnum):
    """What a credit file (信用档案) is kept for."""

    CARRIER = "CARRIER"
    """道路运输企业, keyed by unified social credit code."""
    VEHICLE = "VEHICLE"
    """货运车辆, keyed by plate number and plate colour."""
    DRIVER = "DRIVER"
    """驾驶人, keyed by resident ID number (or qualification certificate number)."""
    LOADING_SOURCE = "LOADING_SOURCE"
    """货运源头单位, keyed by unified social credit code."""
    PERSON = "PERSON"
    """Any other penalised party (e.g. an instigator), keyed by USCC or ID number."""


class PenaltyCategory(enum.StrEnum):
    """处罚类别 (CF_CFLB), from light to heavy (RULES.md §1)."""

    WARNING = "WARNING"  # 警告
    PUBLIC_CRITICISM = "PUBLIC_CRITICISM"  # 通报批评
    FINE = "FINE"  # 罚款
    CONFISCATE_ILLEGAL_GAINS = "CONFISCATE_ILLEGAL_GAINS"  # 没收违法所得
    CONFISCATE_ILLEGAL_PROPERTY = "CONFISCATE_ILLEGAL_PROPERTY"  # 没收非法财物
    SUSPEND_LICENCE = "SUSPEND_LICENCE"  # 暂扣许可证件
    LOWER_QUALIFICATION = "LOWER_QUALIFICATION"  # 降低资质等级
    REVOKE_LICENCE = "REVOKE_LICENCE"  # 吊销许可证件
    RESTRICT_OPERATIONS = "RESTRICT_OPERATIONS"  # 限制开展生产经营活动
    SUSPENSION_ORDER = "SUSPENSION_ORDER"  # 责令停产停业 (停业整顿)
    ORDER_CLOSURE = "ORDER_CLOSURE"  # 责令关闭
    RESTRICT_PRACTICE = "RESTRICT_PRACTICE"  # 限制从业
    ADMINISTRATIVE_DETENTION = "ADMINISTRATIVE_DETENTION"  # 行政拘留


class ViolationCode(enum.StrEnum):
    """Violation type codes (CF_WFXW) that the credit rules look at."""

    OVERLOAD_TRANSPORT = "OVERLOAD_TRANSPORT"
    """违法超限运输 by a vehicle, its driver or its carrier."""
    INSTIGATE_OVERLOAD = "INSTIGATE_OVERLOAD"
    """指使、强令 a driver to overload (RULES.md §2 item 5)."""
    REFUSE_INSPECTION = "REFUSE_INSPECTION"
    """拒绝检测 or giving false information (item 7)."""
    OTHER = "OTHER"
    """Any other transport violation: counts for score and watchlist, not for overload lists."""


class Procedure(enum.StrEnum):
    """Procedure under which a penalty was decided."""

    SIMPLE = "SIMPLE"  # 简易程序
    GENERAL = "GENERAL"  # 普通程序


class ChangeType(enum.StrEnum):
    """Whether a decision event issues a decision or changes an earlier one."""

    ISSUED = "ISSUED"
    MODIFIED = "MODIFIED"
    REVOKED = "REVOKED"


class LicenceType(enum.StrEnum):
    """Kinds of licensing decision (行政许可) the bureau makes."""

    ROAD_TRANSPORT_OPERATING_LICENCE = "ROAD_TRANSPORT_OPERATING_LICENCE"  # 道路运输经营许可证
    VEHICLE_OPERATING_CERTIFICATE = "VEHICLE_OPERATING_CERTIFICATE"  # 道路运输证: vehicle→carrier
    DRIVER_QUALIFICATION = "DRIVER_QUALIFICATION"  # 从业资格证
    OVERSIZE_TRANSPORT_PERMIT = "OVERSIZE_TRANSPORT_PERMIT"  # 超限运输许可


class LicenceStatus(enum.StrEnum):
    """当前状态 (XK_ZT)."""

    GRANTED = "GRANTED"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class SubjectRef:
    """Identity of a credit file: what kind of subject, and its key."""

    kind: SubjectKind
    """What the subject is."""
    key: str
    """USCC, resident ID number, or ``"<plate>|<colour>"`` for a vehicle."""

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.key}"


def vehicle_key(plate_number: str, plate_colour: PlateColour) -> str:
    """The key of a vehicle's credit file: plate and colour identify it together."""
    return f"{plate_number}|{plate_colour.value}"


@dataclass(frozen=True, slots=True)
class OverloadDetection:
    """A weigh-station or weigh-in-motion measurement of one vehicle (治超)."""

    event_id: str
    """Stable upstream id of this event; a resend carries the same id."""
    detection_id: str
    """Detection number assigned by the station; penalties link to it."""
    event_time: datetime
    """When the vehicle was weighed (UTC, timezone-aware)."""
    station_id: str
    """Weigh station or in-motion point code."""
    station_name: str
    """Human name of the station."""
    station_type: StationType
    """Precise weighing at a fixed station, or an in-motion pre-check."""
    plate_number: str
    """车牌号, e.g. 鲁P12345 (ordinary) or 鲁PD12345 (new-energy)."""
    plate_colour: PlateColour
    """车牌颜色."""
    vehicle_class: str
    """Vehicle class as the station records it (e.g. 三轴货车, 六轴列车)."""
    axle_count: int
    """Number of axles; determines the legal limit."""
    gross_weight_kg: int
    """Measured gross weight in kilograms."""
    legal_limit_kg: int
    """Legal gross weight limit for this vehicle in kilograms."""
    reported_overload_ratio: float
    """The ratio the station reported; never trusted, always recomputed."""
    carrier_uscc: str | None = None
    """Unified social credit code of the carrier, where known."""
    carrier_name: str | None = None
    """Carrier name, where known."""
    driver_id_number: str | None = None
    """Resident ID number of the driver, where known (personal data)."""
    driver_name: str | None = None
    """Driver name, where known (personal data)."""
    driver_qualification_number: str | None = None
    """从业资格证 number of the driver, where known."""
    loading_source_uscc: str | None = None
    """USCC of the loading source (货运源头单位), where known."""
    loading_source_name: str | None = None
    """Name of the loading source, where known."""
    evidence_refs: tuple[str, ...] = ()
    """References to photos, weighing tickets and video held by the station."""

    @property
    def overload_ratio(self) -> float:
        """超限率 recomputed from the weights: gross / limit - 1."""
        return self.gross_weight_kg / self.legal_limit_kg - 1.0


@dataclass(frozen=True, slots=True)
class PenaltyDecision:
    """An administrative penalty decision (行政处罚), or a change to one."""

    event_id: str
    """Stable upstream id of this event."""
    decision_number: str
    """行政处罚决定书文号 (CF_WSH)."""
    revision: int
    """0 for the original decision, +1 for each later change."""
    change_type: ChangeType
    """Issued, modified or revoked."""
    subject_name: str
    """行政相对人名称 (CF_XDR_MC)."""
    subject_type: SubjectType
    """行政相对人类别 (CF_XDR_LB)."""
    violation_code: ViolationCode
    """Violation class used by the credit rules."""
    violation_type: str
    """违法行为类型 as written in the decision (CF_WFXW)."""
    facts: str
    """违法事实 (CF_SY)."""
    legal_basis: str
    """处罚依据 (CF_YJ)."""
    penalty_categories: tuple[PenaltyCategory, ...]
    """处罚类别 (CF_CFLB)."""
    content: str
    """处罚内容 (CF_NR)."""
    fine_amount_yuan: Decimal
    """罚款金额 in yuan; exported in 万元 as CF_NR_FK."""
    decision_date: date
    """处罚决定日期 (CF_JDRQ): windows and deadlines count from it."""
    authority: str
    """处罚机关 (CF_CFJG)."""
    authority_code: str
    """处罚机关统一社会信用代码 (CF_CFJGDM)."""
    procedure: Procedure
    """Simple or general procedure."""
    subject_uscc: str | None = None
    """统一社会信用代码 (CF_XDR_SHXYM) of a legal person or individual business."""
    subject_id_number: str | None = None
    """证件号码 (CF_XDR_ZJHM) of a natural person: resident ID number (personal data)."""
    legal_representative: str | None = None
    """法定代表人 (CF_FRDB)."""
    plate_number: str | None = None
    """Plate of the vehicle the case concerns, if any."""
    plate_colour: PlateColour | None = None
    """Plate colour of that vehicle."""
    driver_id_number: str | None = None
    """Resident ID number of the driver in the case, when the subject is not the driver."""
    carrier_uscc: str | None = None
    """USCC of the carrier in the case, when the subject is not the carrier."""
    confiscated_amount_yuan: Decimal = Decimal(0)
    """没收违法所得、没收非法财物的金额 in yuan (CF_NR_WFFF in 万元)."""
    licence_suspended_or_revoked: str | None = None
    """暂扣或吊销证照名称及编号 (CF_NR_ZKDX)."""
    related_detection_ids: tuple[str, ...] = ()
    """Detections this penalty confirms; a confirmed detection counts once."""
    subject_is_minor: bool = False
    """The penalised person is a minor: never published (RULES.md §1)."""
    confidential: bool = False
    """State or trade secret or personal privacy: never published."""
    subject_address: str | None = None
    """Address of the subject (personal data: masked, never published)."""
    subject_phone: str | None = None
    """Phone of the subject (personal data: masked, never published)."""
    remarks: str | None = None
    """备注 (BZ)."""


@dataclass(frozen=True, slots=True)
class LicensingDecision:
    """An administrative licensing decision (行政许可), or a status change of a licence."""

    event_id: str
    """Stable upstream id of this event."""
    licence_number: str
    """许可编号 (XK_XKBH)."""
    document_number: str
    """行政许可决定文书号 (XK_WSH)."""
    document_name: str
    """行政许可决定文书名称 (XK_XKWS)."""
    revision: int
    """0 for the grant, +1 for each later status change."""
    licence_type: LicenceType
    """What kind of licence."""
    status: LicenceStatus
    """当前状态 (XK_ZT) after this decision."""
    subject_name: str
    """行政相对人名称 (XK_XDR_MC)."""
    subject_type: SubjectType
    """行政相对人类别 (XK_XDR_LB)."""
    licence_category: str
    """许可类别 (XK_XKLB), e.g. 普通, 特许, 认可, 核准, 登记."""
    certificate_name: str
    """许可证书名称 (XK_XKZS)."""
    content: str
    """许可内容 (XK_NR)."""
    decision_date: date
    """许可决定日期 (XK_JDRQ)."""
    valid_from: date
    """有效期自 (XK_YXQZ)."""
    valid_until: date | None
    """有效期至 (XK_YXQZI); None when open-ended."""
    authority: str
    """许可机关 (XK_XKJG)."""
    authority_code: str
    """许可机关统一社会信用代码 (XK_XKJGDM)."""
    subject_uscc: str | None = None
    """统一社会信用代码 (XK_XDR_SHXYM)."""
    subject_id_number: str | None = None
    """证件号码 (XK_XDR_ZJHM) of a natural person (personal data)."""
    legal_representative: str | None = None
    """法定代表人 (XK_FRDB)."""
    plate_number: str | None = None
    """Vehicle plate, for operating certificates and oversize permits."""
    plate_colour: PlateColour | None = None
    """Plate colour of that vehicle."""
    carrier_uscc: str | None = None
    """The carrier a vehicle operating certificate ties the vehicle to."""
    permit_route: str | None = None
    """Route of an oversize transport permit."""
    permit_valid_from: datetime | None = None
    """Start of an oversize permit's validity (an instant, not a day)."""
    permit_valid_until: datetime | None = None
    """End of an oversize permit's validity."""
    remarks: str | None = None
    """备注 (BZ)."""


class ObjectionAction(enum.StrEnum):
    """What an objection (异议) event says happened to it."""

    FILED = "FILED"
    """The subject disputes a list entry or a decision record."""
    UPHELD = "UPHELD"
    """The review found for the subject: the entry or record is corrected or removed."""
    REJECTED = "REJECTED"
    """The review left the conclusion unchanged (RULES.md §2: then the entry is published)."""


class ObjectionTarget(enum.StrEnum):
    """What an objection disputes."""

    LIST_ENTRY = "LIST_ENTRY"
    """A proposed or published list entry of the subject (by list name and rule id)."""
    DECISION = "DECISION"
    """A penalty decision record: its publication and every list entry it supports."""


@dataclass(frozen=True, slots=True)
class Objection:
    """An objection (异议) against a list entry or a decision record, filed or resolved.

    The subject fields name the credit file that holds the target: a decision about a vehicle
    case is held by the vehicle's file, so an objection to it names the plate.
    """

    event_id: str
    """Stable upstream id of this event."""
    objection_id: str
    """Identity of the objection across its FILED and resolution events."""
    action: ObjectionAction
    """Filed, upheld or rejected."""
    subject_kind: SubjectKind
    """Kind of the credit file that holds the target."""
    target: ObjectionTarget
    """A list entry or a decision record."""
    occurred_at: datetime
    """When it was filed or resolved."""
    handled_by: str
    """The agency that handles it (异议处理机关)."""
    subject_code: str | None = None
    """USCC or resident ID number of the subject (None for a vehicle)."""
    plate_number: str | None = None
    """Plate of a vehicle subject."""
    plate_colour: PlateColour | None = None
    """Plate colour of a vehicle subject."""
    list_name: str | None = None
    """LIST_ENTRY: ``BLACKLIST``, ``WATCHLIST`` or ``RED_LIST``."""
    rule_id: str | None = None
    """LIST_ENTRY: the rule of the entry (e.g. ``overload.vehicle``)."""
    decision_number: str | None = None
    """DECISION: 行政处罚决定书文号 of the disputed decision."""
    reason: str = ""
    """The statement or the conclusion (may hold personal data: never logged)."""


@dataclass(frozen=True, slots=True)
class RepairApplication:
    """A credit repair (信用修复) application for one penalty decision record.

    The system decides it by the rules in force on the decision date (RULES.md §3); the subject
    fields name the credit file that holds the decision, as for :class:`Objection`.
    """

    event_id: str
    """Stable upstream id of this event."""
    application_id: str
    """Identity of the application."""
    subject_kind: SubjectKind
    """Kind of the credit file that holds the decision."""
    decision_number: str
    """行政处罚决定书文号 of the record to repair."""
    applied_at: datetime
    """When the application was made."""
    obligations_fulfilled: bool
    """The penalty's obligations are completely fulfilled (完全履行)."""
    public_commitment: bool
    """The applicant made a public credit commitment (公开作出信用承诺)."""
    subject_code: str | None = None
    """USCC or resident ID number of the subject (None for a vehicle)."""
    plate_number: str | None = None
    """Plate of a vehicle subject."""
    plate_colour: PlateColour | None = None
    """Plate colour of a vehicle subject."""
    applicant_name: str = ""
    """Who applied (may be a person's name: never logged)."""


InputEvent = OverloadDetection | PenaltyDecision | LicensingDecision | Objection | RepairApplication


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input record cannot be processed: a stable code and a message for humans."""

    reason_code: str
    """Stable, machine-readable reason (e.g. ``USCC_CHECK_CHARACTER``)."""
    message: str
    """What is wrong, in plain words; never carries unmasked personal data."""
    field_name: str | None = None
    """The field at fault, where one is."""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of validating one input event."""

    rejections: tuple[Rejection, ...] = field(default_factory=tuple)
    """Empty when the event is valid."""

    @property
    def ok(self) -> bool:
        """True when nothing was rejected."""
        return not self.rejections
