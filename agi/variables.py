"""Every channel variable the routes and the dial plan share, in one place."""

# What the dial plan does after the AGI returns. Anything else, or nothing,
# means: apologise and hang up (fail closed).
ACTION = "KINLINE_ACTION"
ACTION_DONE = "done"
ACTION_DIAL = "dial"
# With ACTION "done": what the dial plan plays before it hangs up ('&'-joined sound files).
FINAL_PROMPT = "KINLINE_FINAL_PROMPT"

# The digits the greeting route collected (diagnostics, tests).
DIGITS = "KINLINE_DIGITS"

# Set on the terminal's endpoint (pjsip set_var).
FACILITY = "KINLINE_FACILITY"
# The caller's PJSIP endpoint: the terminal whose failed logins are throttled.
ENDPOINT = "CHANNEL(endpoint)"

# What the dial plan needs to dial (set by inmate_call / after_dial).
NUMBER = "KINLINE_NUMBER"
# Dial()'s target: the trunk (PJSIP/<number>@trunk) or the app's contacts ('&'-joined);
# "1" in DIAL_APP: the INVITEs carry the call id (X-Kinline-Call-Id, pre-dial handler).
DIAL_TARGET = "KINLINE_DIAL_TARGET"
DIAL_APP = "KINLINE_DIAL_APP"
RING_S = "KINLINE_RING_S"
# A woken app call's legs (Local/<device>@kinline-app-leg): "<call id> <phone> <window's end, epoch ms>",
# set on the caller with inheritance (__) so each leg's channel has it; a leg's Dial target and ring time.
APP_WAIT = "KINLINE_APP_WAIT"
LEG_TARGET = "KINLINE_LEG_TARGET"
LEG_RING_S = "KINLINE_LEG_RING_S"
LEG_CALL_ID = "KINLINE_LEG_CALL_ID"
LIMIT_MS = "KINLINE_LIMIT_MS"
WARN_MS = "KINLINE_WARN_MS"
WARNING_FILE = "KINLINE_WARNING_FILE"
RECORD = "KINLINE_RECORD"
RECORDING = "KINLINE_RECORDING"
INTRO = "KINLINE_INTRO"
# "1": the relative pays ("01"): Dial's U() runs the accept menu (kinline-accept)
# instead of the intro; anything but "0" means the menu (fail closed).
ACCEPT_MENU = "KINLINE_ACCEPT_MENU"

# The call plan (JSON), kept on the channel between routes.
PLAN = "KINLINE_PLAN"
# The attempt's call id, for the dial plan's event-log stamps (CELGenUserEvent).
CALL_ID = "KINLINE_CALL_ID"
ATTEMPT = "KINLINE_ATTEMPT"
CARD = "KINLINE_CARD"
LANGUAGE = "KINLINE_LANGUAGE"
SETTLED = "KINLINE_SETTLED"
# "1": the call is over, settled and its card freed (after_dial, before the goodbye): the
# hangup handler (kinline-hangup) has nothing left to do and skips its FastAGI session.
CLOSED = "KINLINE_CLOSED"

# Epoch milliseconds: the bridge (set on the caller by the callee's intro
# gosub) and the end of Dial (after Dial, or in the hangup handler).
BRIDGED_AT = "SHARED(KINLINE_BRIDGED_AT)"
DIAL_END = "KINLINE_DIAL_END"
# The bridge's moment on the relative's own leg (kinline-callee), epoch ms.
BRIDGE_STAMP = "KINLINE_AT"
# The relative's leg's own hangup cause, set after Dial when that leg ended
# first (empty when the caller hung up): a dropped line shows here (44 on RTP timeout).
FAR_CAUSE = "KINLINE_FAR_CAUSE"

# The relative's decision in the accept menu (ivr.accept.Outcome values). Set by
# the accept route on the relative's leg (the dial plan bridges only on
# "accepted") and on the caller as SHARED (after_dial tells the inmate).
ACCEPT = "KINLINE_ACCEPT"
ACCEPT_ON_CALLER = "SHARED(KINLINE_ACCEPT)"


def accept_on(caller_channel: str) -> str:
    """The caller's SHARED(KINLINE_ACCEPT), written from the relative's leg."""
    return f"SHARED({ACCEPT},{caller_channel})"


# The caller's call plan, read from the relative's leg (GET FULL VARIABLE on the caller's channel).
PLAN_EXPR = f"${{{PLAN}}}"
# Who hung up a channel (its own name when its SIP far end sent BYE): read on the caller from the relative's leg.
HANGUP_SOURCE_EXPR = "${CHANNEL(hangupsource)}"

# Set by Asterisk's Dial().
DIALSTATUS = "DIALSTATUS"
HANGUPCAUSE = "HANGUPCAUSE"
