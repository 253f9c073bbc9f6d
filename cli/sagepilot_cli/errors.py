"""What the command refuses, and why: the message is printed as it is, and the command exits 2."""

from __future__ import annotations


class CommandRefused(Exception):
    """The command does not apply (to the endpoint's current state, or to what was given)."""
