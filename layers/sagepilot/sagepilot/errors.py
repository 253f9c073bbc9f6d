"""Domain errors with names that say what went wrong.

`TransientError`s are worth retrying (the message goes back to its queue); `PermanentError`s are not
(the input is rejected with a report). `ConfigurationError` means the function's settings are wrong and
it refuses to start.
"""

from __future__ import annotations


class SagepilotError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(SagepilotError):
    """A required setting is missing or invalid; the function must not run with it."""


class TransientError(SagepilotError):
    """A failure that may go away by itself (throttling, capacity, 5xx); retry later."""


class PermanentError(SagepilotError):
    """A failure that retrying cannot fix; report it and stop."""


class CapacityError(TransientError):
    """SageMaker refused for lack of quota or capacity (ResourceLimitExceeded, CapacityError)."""

    def __init__(self, message: str, *, instance_type: str) -> None:
        super().__init__(message)
        self.instance_type = instance_type


class ObjectGone(SagepilotError):
    """The object version named by an event no longer exists (deleted since the upload)."""


class MalformedEvent(SagepilotError):
    """An event that is not of the shape this function accepts; it is logged and dropped."""


class UnrelatedEvent(MalformedEvent):
    """A well-formed event the function's rule lets through but that is about nothing it manages (the stack's
    own control alarms share the endpoint alarms' name prefix): dropped, logged as information, not as an
    error."""
