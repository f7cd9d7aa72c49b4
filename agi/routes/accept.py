"""``accept``: the relative's accept menu, on the relative's leg of a call they pay for ("01").

Runs in Dial's U() gosub (dialplan ``kinline-accept``) after the relative
answered and before the bridge. Arguments: the caller's channel and the
attempt's call id. The plan is read from the caller's channel.

The decision goes to two places: ``KINLINE_ACCEPT`` on this channel (the dial
plan bridges only on "accepted") and ``SHARED(KINLINE_ACCEPT)`` on the caller
(after_dial tells the inmate). Fail closed: anything that stops this route
(AGI server down, Redis down, a missing plan) leaves the relative's leg
without "accepted": it is hung up, never bridged, nothing billed.
"""

from __future__ import annotations

from agi import variables as v
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import plan_from_text
from agi.protocol import AgiEnvironment, AgiHangup
from agi.server import Route
from ivr.accept import AcceptMenu, OfferError, Outcome
from ivr.call_plan import CallPlan
from ivr.numbering import Payer


def make_accept(deps: CallDeps) -> Route:
    relatives = deps.calls.relatives
    menu = AcceptMenu(deps.calls.directory, relatives) if relatives is not None else None

    async def accept(channel: AgiChannel, env: AgiEnvironment) -> None:
        if menu is None or len(env.arguments) < 2:
            channel.log.error("accept menu unavailable (relatives' store: %s, %d argument(s)): not accepted",
                              "yes" if menu else "no", len(env.arguments))
            return
        caller_channel, call_id = env.arguments[0], env.arguments[1]
        plan = await _caller_plan(channel, caller_channel)
        if plan is None or plan.call_id != call_id or plan.payer != Payer.CALLEE.value:
            channel.log.error("call %s: no relative-paid plan on %s: not accepted", call_id, caller_channel)
            return
        try:
            offer = await menu.offer(plan)
        except OfferError as err:
            channel.log.error("%s: not accepted", err)
            return
        # The menu runs: from here a hangup (or a failure) is the relative's "no" for the inmate.
        await channel.set_variable(v.accept_on(caller_channel), Outcome.HUNG_UP.value)
        relative = AgiCaller(channel, offer.language)
        try:
            outcome = await menu.run(relative, offer, await deps.facility_name(offer.facility),
                                     deps.name_item(plan.inmate_id), lambda: _inmate_waits(channel, caller_channel))
        except AgiHangup:
            channel.log.info("call %s: the relative hung up during the menu", call_id)
            return
        await channel.set_variable(v.accept_on(caller_channel), outcome.value)
        if outcome.bridges:
            await channel.set_variable(v.ACCEPT, outcome.value)
            channel.log.info("call %s: accepted, bridging", call_id)
            return
        channel.log.info("call %s: not connected (%s)", call_id, outcome.value)
        await menu.farewell(relative, outcome)

    return accept


async def _caller_plan(channel: AgiChannel, caller_channel: str) -> CallPlan | None:
    """The CallPlan on the caller's channel (None if that channel or its plan is gone)."""
    result = await channel.command("GET FULL VARIABLE", v.PLAN_EXPR, caller_channel)
    if result.result != 1 or not result.data:
        return None
    return plan_from_text(result.data)


async def _inmate_waits(channel: AgiChannel, caller_channel: str) -> bool:
    """Is the inmate's channel still there and not hung up? chan_pjsip names
    the channel itself as its hangup source when its far end (the terminal)
    sent BYE; Dial waits for this gosub before it notices."""
    result = await channel.command("GET FULL VARIABLE", v.HANGUP_SOURCE_EXPR, caller_channel)
    return result.result == 1 and result.data != caller_channel
