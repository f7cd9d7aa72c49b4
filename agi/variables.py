"""Every channel variable the routes and the dial plan share, in one place."""

# What the dial plan does after the AGI returns. Anything else, or nothing,
# means: apologise and hang up (fail closed).
ACTION = "KINLINE_ACTION"
ACTION_DONE = "done"
ACTION_DIAL = "dial"

# The digits the greeting route collected (diagnostics, tests).
DIGITS = "KINLINE_DIGITS"
