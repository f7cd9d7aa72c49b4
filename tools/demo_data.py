"""Demo data for `make run` (and `kinline demo load`): idempotent.

Facility "demo" with the seed tariff (mobile 3.59, landline 3.07, app 2.05
RUB/min, fee 1.50 RUB, 15 min max), one inmate, card 1001 with PIN 2468 and
500.00 RUB, two relatives and a lawyer on its list, and a demo terminal.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from ivr.errors import StoreConflict
from ivr.model import AllowedNumber, Facility, Inmate, InmateStatus
from ivr.tariffs import demo_tariff
from store.redis_store import RedisStore
from tools.asterisk_conf import Terminal, load_terminals, save_terminals
from tools.config import StackConfig

FACILITY = Facility(
    id="demo",
    name="Demo facility",
    timezone="Europe/Moscow",
    currency="RUB",
    language="ru",
    schedule="mon-sun 00:00-23:59",
    max_call_s=15 * 60,
)
INMATE = Inmate(id="demo-inmate", name="Ivan Demo", facility_id="demo", status=InmateStatus.CONVICTED)
CARD = "1001"
PIN = "2468"
TOPUP_AMOUNT = 50000  # 500.00 RUB
TOPUP_ID = "demo-topup-1"
NUMBERS = (
    AllowedNumber("+79161234567", "Mother"),
    AllowedNumber("+74951234567", "Home (landline)"),
    AllowedNumber("+79031234567", "Lawyer", privileged=True),
)
TERMINAL = "demo-term"


def _ensure_terminal(config: StackConfig) -> Terminal:
    """The demo terminal in terminals.json; an existing one keeps its password."""
    terminals = load_terminals(config)
    for terminal in terminals:
        if terminal.name == TERMINAL:
            return terminal
    alphabet = string.ascii_letters + string.digits
    password = "".join(secrets.choice(alphabet) for _ in range(24))
    terminal = Terminal(TERMINAL, password, FACILITY.language, FACILITY.id)
    save_terminals(config, [*terminals, terminal])
    return terminal


async def load_demo(store: RedisStore, config: StackConfig) -> dict[str, Any]:
    """Provision the demo; running it again changes nothing (the top-up is
    idempotent by its payment id). Returns what a tester needs to call.
    Refuses (StoreConflict) if card 1001 exists and is not the demo card."""
    card = await store.card(CARD)
    if card is not None and (card.inmate_id, card.facility_id) != (INMATE.id, FACILITY.id):
        raise StoreConflict(f"card {CARD} exists and is not the demo card: demo data not loaded")
    await store.put_facility(FACILITY)
    await store.put_tariff(FACILITY.id, demo_tariff())
    await store.put_inmate(INMATE)
    if card is None:
        await store.create_card(CARD, INMATE.id, FACILITY.id, PIN, FACILITY.language)
    elif store.pins is None or store.pins.needs_upgrade(card.pin_hash) or not store.pins.verify(PIN, card.pin_hash):
        await store.set_pin(CARD, PIN)  # the demo PIN, keyed with this stack's key
    balance = await store.top_up(CARD, TOPUP_AMOUNT, TOPUP_ID)
    for number in NUMBERS:
        await store.allow_number(CARD, number)
    terminal = _ensure_terminal(config)
    return {
        "facility": FACILITY.id,
        "card": CARD,
        "pin": PIN,
        "balance": balance,  # minor units
        "numbers": [n.e164 for n in NUMBERS],
        "terminal": terminal.name,
        "sip_password": terminal.password,
        "sip_server": f"{config.host}:{config.sip_port}",
    }
