"""One domain error tree; transports map these once to exit codes and gRPC status codes."""

from __future__ import annotations


class MarrowscopeError(Exception):
    """Base of every error a user is expected to see as a one-line message."""

    code = "error"


class InvalidInput(MarrowscopeError):
    """A request or parameter is malformed."""

    code = "invalid_argument"


class SlideNotFound(MarrowscopeError):
    """The slide path or reference does not exist."""

    code = "not_found"


class UnsupportedFormat(MarrowscopeError):
    """The file exists but no adapter recognises its content."""

    code = "unsupported_format"


class SlideUnreadable(MarrowscopeError):
    """The file looks like a known format but is corrupt or truncated."""

    code = "slide_unreadable"


class MissingResolution(MarrowscopeError):
    """No µm/px is known for the slide and none was given."""

    code = "missing_mpp"


class SlideTooLarge(MarrowscopeError):
    """Declared dimensions are absurd or exceed the configured limit."""

    code = "slide_too_large"


class ModelUnavailable(MarrowscopeError):
    """The segmentation model cannot be loaded (missing, untrusted, corrupt, incompatible)."""

    code = "model_unavailable"


class Cancelled(MarrowscopeError):
    """The analysis was cancelled by the user or the server."""

    code = "cancelled"


class PermissionDenied(MarrowscopeError):
    """The caller may not access this resource (e.g. a path outside the configured roots)."""

    code = "permission_denied"


class ResourceExhausted(MarrowscopeError):
    """A queue or disk limit was reached; retry later."""

    code = "resource_exhausted"


class OutputError(MarrowscopeError):
    """An output could not be produced (e.g. DICOM outputs without patient/study metadata)."""

    code = "output_error"
