"""Every channel variable the routes and the dial plan share, in one place."""

# What the dial plan does after the AGI returns. Anything else, or nothing,
# means: apologise and hang up (fail closed).
ACTION = "KINLINE_ACTION"
ACTION_DONE = "done"
ACTION_DIAL = "dial"

# The digits the greeting route collected (diagnostics, tests).
DIGITS = "KINLINE_DIGITS"

# Set on the terminal's endpoint (pjsip set_var).
FACILITY = "KINLINE_FACILITY"
# The caller's PJSIP endpoint: the terminal whose failed logins are throttled.
ENDPOINT = "CHANNEL(endpoint)"

# What the dial plan needs to dial (set by inmate_call / after_dial).
NUMBER = "KINLINE_NUMBER"
RING_S = "KINLINE_RING_S"
LIMIT_MS = "KINLINE_LIMIT_MS"
WARN_MS = "KINLINE_WARN_MS"
WARNING_FILE = "KINLINE_WARNING_FILE"
RECORD = "KINLINE_RECORD"
RECORDING = "KINLINE_RECORDING"
INTRO = "KINLINE_INTRO"

# The call plan (JSON), kept on the channel between routes.
PLAN = "KINLINE_PLAN"
# The attempt's call id, for the dial plan's event-log stamps (CELGenUserEvent).
CALL_ID = "KINLINE_CALL_ID"
ATTEMPT = "KINLINE_ATTEMPT"
CARD = "KINLINE_CARD"
LANGUAGE = "KINLINE_LANGUAGE"
SETTLED = "KINLINE_SETTLED"

# Epoch milliseconds: the bridge (set on the caller by the callee's intro
# gosub) and the end of Dial (after Dial, or in the hangup handler).
BRIDGED_AT = "SHARED(KINLINE_BRIDGED_AT)"
DIAL_END = "KINLINE_DIAL_END"
# The relative's leg's own hangup cause, set after Dial when that leg ended
# first (empty when the caller hung up): a dropped line shows here (44 on RTP timeout).
FAR_CAUSE = "KINLINE_FAR_CAUSE"

# Set by Asterisk's Dial().
DIALSTATUS = "DIALSTATUS"
HANGUPCAUSE = "HANGUPCAUSE"
