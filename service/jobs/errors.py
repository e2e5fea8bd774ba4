"""Job-level errors, in the domain error tree so transports map them in one place."""

from __future__ import annotations

from service.domain.errors import MarrowscopeError


class JobNotFound(MarrowscopeError):
    """No job (or artifact of a job) with this id."""

    code = "not_found"


class JobStateConflict(MarrowscopeError):
    """The operation is not valid in the job's current state."""

    code = "failed_precondition"


class ServiceUnavailable(MarrowscopeError):
    """The server is starting up or shutting down; retry later."""

    code = "unavailable"


class Unauthenticated(MarrowscopeError):
    """The call carries no valid credentials."""

    code = "unauthenticated"
