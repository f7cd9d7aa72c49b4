"""Demo data for `make run` (and `kinline demo load`): idempotent.

Facility "demo" with the seed tariff (mobile 3.59, landline 3.07, app 2.05
RUB/min, fee 1.50 RUB, 15 min max), one inmate, card 1001 with PIN 2468 and
500.00 RUB, two relatives and a lawyer on its list, and a demo terminal.

terminals.json keeps only the demo terminal's digest, like every terminal's. So
that each `make run` can print the same password again, the demo keeps it in
<state>/demo_sip_password (0600, like secrets.toml): the one SIP password at
rest, for a demo on loopback. Terminals made with `kinline terminal add` have none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.errors import StoreConflict
from ivr.model import AllowedNumber, Facility, Inmate, InmateStatus
from ivr.tariffs import demo_tariff
from store.redis_store import RedisStore
from tools.asterisk_conf import TerminalLogin, load_terminals, new_password, save_terminals, write_private
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


def demo_password_path(config: StackConfig) -> Path:
    return config.path("demo_sip_password")


def demo_sip_password(config: StackConfig) -> str | None:
    """The demo terminal's SIP password, if the demo was loaded (bench/ calls with it)."""
    path = demo_password_path(config)
    return path.read_text().strip() if path.exists() else None


def _ensure_terminal(config: StackConfig) -> TerminalLogin:
    """The demo terminal and its password. An existing one keeps its password; without
    the password file, or if it no longer matches the stored digest (e.g. terminals.json
    of the old format, whose plaintext was dropped), the terminal gets a new one."""
    terminals = load_terminals(config)
    current = next((t for t in terminals if t.name == TERMINAL), None)
    password = demo_sip_password(config)
    if current is not None and password is not None and current.accepts(password):
        return TerminalLogin(current.name, password, current.language, current.facility)
    login = TerminalLogin(TERMINAL, new_password(), FACILITY.language, FACILITY.id)
    login.validate()
    write_private(demo_password_path(config), login.password + "\n")
    if current is None:
        save_terminals(config, [*terminals, login.stored()])
    else:
        save_terminals(config, [login.stored() if t.name == TERMINAL else t for t in terminals])
    return login


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
    login = _ensure_terminal(config)
    return {
        "facility": FACILITY.id,
        "card": CARD,
        "pin": PIN,
        "balance": balance,  # minor units
        "numbers": [n.e164 for n in NUMBERS],
        "terminal": login.name,
        "sip_password": login.password,
        "sip_server": f"{config.host}:{config.sip_port}",
    }
