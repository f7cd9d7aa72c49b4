"""Kinline domain: numbering, tariffs, billing, schedules, PINs, words."""
