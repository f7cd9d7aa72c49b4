"""``greeting``: answer, greet, collect digits ended by ``#``, hand them back."""

from __future__ import annotations

from agi import variables
from agi.channel import AgiChannel
from agi.prompts import sound_file
from agi.protocol import AgiEnvironment

DIGIT_TIMEOUT_MS = 10_000
MAX_DIGITS = 20


async def greeting(channel: AgiChannel, env: AgiEnvironment) -> None:
    await channel.answer()
    await channel.stream_file(sound_file(env.language, "welcome"))
    digits, timed_out = await channel.get_data(
        sound_file(env.language, "enter-digits"), DIGIT_TIMEOUT_MS, MAX_DIGITS
    )
    channel.log.info("collected %d digit(s)%s", len(digits), " (timeout)" if timed_out else "")
    await channel.set_variable(variables.DIGITS, digits)
    await channel.stream_file(sound_file(env.language, "thank-you"))
    await channel.set_variable(variables.ACTION, variables.ACTION_DONE)
