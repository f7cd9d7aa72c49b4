"""Request and answer bodies (the OpenAPI schema comes from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ivr.relatives import MAX_AMOUNT

Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT, description="minor units (kopecks)")]
Phone = Annotated[StrictStr, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164", examples=["+79161234567"])]
CardNumber = Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeRequest(_Body):
    phone: Phone


class SessionRequest(_Body):
    phone: Phone
    code: Annotated[StrictStr, Field(pattern=r"^[0-9]{6}$")]


class SessionAnswer(BaseModel):
    token: str
    expires_in: int


class Balance(BaseModel):
    phone: str
    balance: int


class Entry(BaseModel):
    ts: datetime
    kind: str
    amount: int
    balance_after: int
    ref: str
    card: str


class TopupRequest(_Body):
    amount: Amount


class TopupAnswer(BaseModel):
    payment_id: str
    amount: int
    status: str


class TransferRequest(_Body):
    card: CardNumber
    amount: Amount


class TransferAnswer(BaseModel):
    card: str
    amount: int
    balance: int


class RefundRequest(_Body):
    amount: Amount


class PayoutAnswer(BaseModel):
    payout_id: str
    amount: int
    status: str


class CardSettingsBody(_Body):
    always_in_touch: StrictBool = False
    cap_day: Amount | None = None
    cap_month: Amount | None = None
    blocked: StrictBool = False


class WebhookBody(BaseModel):
    payment_id: Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    amount: Amount
    status: StrictStr


class Problem(BaseModel):
    detail: str


class FieldIssue(BaseModel):
    """One reason FastAPI refused a request body or parameter."""

    loc: list[str | int]
    msg: str
    type: str


class BadRequest(BaseModel):
    """422: a refused field (``detail`` lists them) or a refused request (``detail`` says why)."""

    detail: str | list[FieldIssue]
