"""``inmate_call``: greet, card and PIN, checks, balance, number; then dial or refuse."""

from __future__ import annotations

import asyncio
import functools

from agi import variables as v
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import plan_to_text, save_plan
from agi.prompts import sound_file
from agi.protocol import AgiEnvironment
from agi.routes.app_dial import AppRouting
from agi.server import Route
from agi.settle import retrying
from ivr import prompts as p
from ivr.call_plan import CallPlan
from ivr.inmate_call import DIAL_ATTEMPTS, RING_S, Refused, Session
from ivr.numbering import Payer
from ivr.tariffs import RouteKind


def make_inmate_call(deps: CallDeps, app: AppRouting | None = None) -> Route:
    async def inmate_call(channel: AgiChannel, env: AgiEnvironment) -> None:
        # Overload control first, before any Redis read or reservation.
        channel.on_round_trip = deps.load.round_trip
        if not await admitted(channel, env, deps):
            return
        with deps.load.in_the_ivr():
            await admitted_call(channel, env)

    async def admitted_call(channel: AgiChannel, env: AgiEnvironment) -> None:
        # The dial plan answered and passes the terminal's facility and endpoint (kinline-ivr);
        # either missing: the facility is unknown or the terminal unthrottled, the call refused.
        facility_id, terminal = (*env.arguments, "", "")[:2]
        caller = AgiCaller(channel, env.language)
        try:
            session = await deps.calls.login(caller, facility_id, env.uniqueid, terminal)
        except Refused as refused:
            await refuse(channel, caller, refused, deps)
            return
        try:
            await channel.set_variables({v.CARD: session.card.number, v.LANGUAGE: caller.language})
        except BaseException:
            await deps.calls.end(session.card.number, env.uniqueid)
            raise
        try:
            if not deps.names.has_name(session.inmate.id):  # the first login: no name recorded yet
                with caller.aside():  # the balance waits: it leads into the number (type-ahead)
                    await deps.names.record(caller, session.inmate.id, env.uniqueid)
            await plan_and_dial(channel, caller, deps, session, env.uniqueid, attempt=1, app=app)
        except asyncio.CancelledError:
            # The server is stopping: the caller hears the apology; free the card now
            # (the reconciler would, once the channel is gone, but a restart may be slow).
            await asyncio.shield(deps.calls.end(session.card.number, env.uniqueid))
            raise

    return inmate_call


async def admitted(channel: AgiChannel, env: AgiEnvironment, deps: CallDeps) -> bool:
    """Admit the call, or answer it with 'all lines are busy' and hang up (nothing read or reserved)."""
    verdict, backlog = deps.load.admit()
    if verdict.admitted:
        return True
    refused = Refused(p.LINES_BUSY, f"overload: {verdict.reason}")
    channel.log.warning("call refused: %s (in the IVR %d, AGI latency p90 %.1f ms; %s)", refused.reason,
                        backlog.in_ivr, backlog.agi_latency_ms, deps.load.describe())
    deps.metrics.refused(refused.prompt, refused.reason)
    # The dial plan says it: this session ends at once (one command, ACTION last).
    last = AgiCaller(channel, env.language).last_words([refused.prompt])
    await channel.set_variables({v.FINAL_PROMPT: last, v.ACTION: v.ACTION_DONE})
    return False


async def refuse(channel: AgiChannel, caller: AgiCaller, refused: Refused, deps: CallDeps) -> None:
    channel.log.info("call refused: %s", refused.reason)
    deps.metrics.refused(refused.prompt, refused.reason)
    last = caller.last_words([refused.prompt] if refused.prompt == p.GOODBYE else [refused.prompt, p.GOODBYE])
    await channel.set_variables({v.FINAL_PROMPT: last, v.ACTION: v.ACTION_DONE})  # the dial plan says it


async def plan_and_dial(channel: AgiChannel, caller: AgiCaller, deps: CallDeps, session: Session,
                        uniqueid: str, attempt: int, app: AppRouting | None = None) -> None:
    """Ask for a number; on success leave the dial plan everything Dial() needs.
    A call to the app ("00") dials the app's contacts (waking it first if none is
    registered); an app that never answers the wake is settled unconnected and the
    inmate may dial another number."""
    while True:
        try:
            plan = await deps.calls.choose_number(caller, session, uniqueid, attempt)
        except Refused as refused:
            await refuse(channel, caller, refused, deps)
            return
        settings = await _prepare(channel, caller, deps, session, plan, attempt, app)
        if settings:
            # One command between the '#' and Dial for a phone (Dial()'s settings, with ACTION
            # last: until it says "dial", the dial plan refuses).
            await channel.set_variables({**settings, v.ACTION: v.ACTION_DIAL})
            deps.metrics.dialed()
            return
        # The app was not reached: nothing charged, another number (as after_dial).
        await retrying(functools.partial(deps.calls.settle, plan, "CHANUNAVAIL", 0, ""),
                       f"settling {plan.call_id}", channel.log, on_retry=deps.metrics.settlement_retry)
        deps.metrics.settled("CHANUNAVAIL")
        await channel.set_variable(v.SETTLED, plan.call_id)
        caller.lead_in([p.APP_UNREACHABLE])  # then 'dial another' and the number: type-ahead through them
        attempt += 1
        again = await another_number(channel, caller, deps, plan, attempt)
        if again is None:
            return
        session = again


async def another_number(channel: AgiChannel, caller: AgiCaller, deps: CallDeps, plan: CallPlan,
                         attempt: int) -> Session | None:
    """After an attempt that did not connect: the session for attempt ``attempt``
    (checks run again) with "you may dial another number" said, or None when the
    call ends (no attempts left, or a check now refuses: the caller was told)."""
    if attempt > DIAL_ATTEMPTS:
        await refuse(channel, caller, Refused(p.GOODBYE, "no more attempts"), deps)
        return None
    try:
        session = await deps.calls.resume(plan.card, plan.facility_id)
    except Refused as refused:
        await refuse(channel, caller, refused, deps)
        return None
    caller.lead_in([p.DIAL_ANOTHER])  # the next number's preamble (type-ahead)
    return session


def is_app(plan: CallPlan) -> bool:
    return plan.route_kind == RouteKind.APP_AUDIO.value


def trunk_target(plan: CallPlan) -> str:
    return f"PJSIP/{plan.e164}@trunk"


async def _prepare(channel: AgiChannel, caller: AgiCaller, deps: CallDeps, session: Session, plan: CallPlan,
                   attempt: int, app: AppRouting | None) -> dict[str, str | int]:
    """Return Dial()'s settings, its target and the plan included, for the caller to set with
    ACTION ({} = the app was not reached). The plan is on the channel before anything is said
    (a hangup then settles it unconnected): when the call's length is announced, and for a call
    to the app, which sets its settings first (its legs inherit them while it waits for the app).
    Else it goes with the settings: one command between the '#' and Dial."""
    plan_saved_first = is_app(plan) or deps.calls.announces(session, plan)
    if plan_saved_first:
        await save_plan(channel, plan)
    channel.log.info("dialing %s (%s, attempt %d): up to %d s, %d reserved, %s", plan.e164[:5] + "...",
                     plan.route_kind, attempt, plan.max_s, plan.reserved,
                     "recorded" if plan.record else "privileged, not recorded")
    facility = session.facility
    # Who calls (the facility, the inmate's recorded name once there is one) and,
    # when it is true, that the call is recorded (a privileged call is not).
    name = deps.name_item(session.inmate.id)
    intro = [p.CALLEE_INTRO, await deps.facility_name(facility), *([name] if name else []),
             *([p.CALL_RECORDED] if plan.record else [])]
    chroot_path, _ = deps.recording(plan.call_id)
    settings: dict[str, str | int] = {
        v.CALL_ID: plan.call_id, v.DIAL_END: "", v.ATTEMPT: attempt,
        v.NUMBER: plan.e164, v.RING_S: RING_S, v.LIMIT_MS: plan.max_s * 1000, v.WARN_MS: plan.warn_s * 1000,
        v.WARNING_FILE: sound_file(caller.language, plan.warning_prompt),
        v.RECORD: "1" if plan.record else "0", v.RECORDING: chroot_path if plan.record else "",
        v.INTRO: "&".join(sound_file(facility.language, item) for item in intro),
        # The relative who pays ("01") hears their accept menu instead of the intro.
        v.ACCEPT_MENU: "1" if plan.payer == Payer.CALLEE.value else "0",
    }
    if not is_app(plan):
        await deps.calls.announce(caller, session, plan, caller.language)  # only if plan_saved_first
        return {**({} if plan_saved_first else {v.PLAN: plan_to_text(plan)}), **settings,
                v.DIAL_TARGET: trunk_target(plan), v.DIAL_APP: "0"}
    await channel.set_variables(settings)
    await deps.calls.announce(caller, session, plan, caller.language)
    if app is None:  # choose_number refuses "00" without the app's devices: never here
        raise Refused(p.SERVICE_UNAVAILABLE, "an app plan without app routing")
    reached = await app.target(channel, caller, plan, facility.name)
    return {v.DIAL_TARGET: reached.target, v.DIAL_APP: "1"} if reached.target else {}
