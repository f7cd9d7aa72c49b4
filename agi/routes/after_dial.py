"""``after_dial``: bill the attempt; if the two were not connected, say why and offer another number."""

from __future__ import annotations

import functools

from agi import variables as v
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import plan_in
from agi.protocol import AgiEnvironment
from agi.routes.app_dial import AppRouting
from agi.routes.inmate_call import another_number, is_app, plan_and_dial
from agi.server import Route
from agi.settle import DIAL_OUTCOME, retrying, settle_attempt
from ivr import prompts as p
from ivr.accept import inmate_hears
from ivr.call_plan import CallPlan
from ivr.inmate_call import DIAL_ATTEMPTS, DIAL_RESULT_PROMPTS
from ivr.numbering import Payer


def make_after_dial(deps: CallDeps, app: AppRouting | None = None) -> Route:
    async def after_dial(channel: AgiChannel, env: AgiEnvironment) -> None:
        seen = await channel.get_variables((v.PLAN, *DIAL_OUTCOME, v.LANGUAGE, v.ATTEMPT, v.ACCEPT_ON_CALLER))
        plan = plan_in(seen)
        if plan is None:
            channel.log.error("after_dial without a call plan: refusing")
            return
        status = await settle_attempt(channel, deps, plan, seen)
        if app is not None and is_app(plan):
            await app.after_dial(plan)
        caller = AgiCaller(channel, seen[v.LANGUAGE] or env.language)
        outcome = _not_connected(channel, plan, status, seen[v.ACCEPT_ON_CALLER])
        if outcome is None:
            # Over: free the card now and tell the hangup handler there is nothing left, the
            # dial plan to say goodbye (one command, ACTION last): the session ends here.
            await retrying(functools.partial(deps.calls.end, plan.card, env.uniqueid), f"freeing card {plan.card}",
                           channel.log)
            await channel.set_variables({v.SETTLED: plan.call_id, v.CLOSED: "1",
                                         v.FINAL_PROMPT: caller.last_words([p.GOODBYE]), v.ACTION: v.ACTION_DONE})
            return
        await channel.set_variable(v.SETTLED, plan.call_id)
        caller.lead_in([outcome])  # said before 'dial another' and the number (or goodbye)
        attempt = int(seen[v.ATTEMPT] or DIAL_ATTEMPTS) + 1
        session = await another_number(channel, caller, deps, plan, attempt)
        if session is not None:
            await plan_and_dial(channel, caller, deps, session, env.uniqueid, attempt, app)

    return after_dial


def _not_connected(channel: AgiChannel, plan: CallPlan, status: str, outcome: str) -> str | None:
    """Why the inmate was not connected, as a prompt; None if they were.

    A relative who pays ("01") answers first and then decides in their menu:
    Dial says ANSWER either way, the menu's ``outcome`` (SHARED(KINLINE_ACCEPT)
    on this channel) tells."""
    if status != "ANSWER":
        # Every app device refusing or not answering: the app is unreachable.
        return p.APP_UNREACHABLE if is_app(plan) else DIAL_RESULT_PROMPTS.get(status, p.UNREACHABLE)
    if plan.payer != Payer.CALLEE.value:
        return None
    channel.log.info("relative's menu for %s: %s", plan.call_id, outcome or "never ran")
    return inmate_hears(outcome)
