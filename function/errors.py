"""The service's one error vocabulary: each error knows its HTTP status and a human message."""

from __future__ import annotations

from http import HTTPStatus


class ServiceError(Exception):
    """Base of every error a client can see; `message` is safe to show, `status` is the HTTP code."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str | None = None):
        self.message = message or self.title
        super().__init__(self.message)

    def body(self) -> dict:
        return {"error": {"code": self.status, "status": self.title, "message": self.message}}


class BadParameter(ServiceError):
    status, title = 400, "Bad Request"


class BadImage(ServiceError):
    status, title = 400, "Invalid image"


class Unauthorized(ServiceError):
    status, title = 401, "Unauthorized"


class SourceRefused(ServiceError):
    """A `source` URL that points somewhere the service must not go."""

    status, title = 400, "Bad Request"


class NotFound(ServiceError):
    status, title = 404, "Not Found"


class ModelNotFound(ServiceError):
    status, title = 404, "Model not found"


class MethodNotAllowed(ServiceError):
    status, title = 405, "Method Not Allowed"


class RequestTimeout(ServiceError):
    """The client did not send its request within the deadline."""

    status, title = 408, "Request Timeout"


class TooLarge(ServiceError):
    status, title = 413, "Payload Too Large"


class UriTooLong(ServiceError):
    status, title = 414, "URI Too Long"


class NotAnImage(ServiceError):
    status, title = 415, "Unsupported Media Type"


class Overloaded(ServiceError):
    status, title = 429, "Too Many Requests"

    def __init__(self, message: str | None = None, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class HeadersTooLarge(ServiceError):
    status, title = 431, "Request Header Fields Too Large"


class ClientGone(ServiceError):
    """The client closed the connection before the answer: nothing to send, logged as nginx's 499."""

    status, title = 499, "Client Closed Request"


class ModelNotReady(ServiceError):
    status, title = 503, "Service Unavailable"


class InferenceTimeout(ServiceError):
    """The deadline passed while fetching a `source`, waiting for the model or running it."""

    status, title = 504, "Gateway Timeout"


class ConfigError(Exception):
    """A bad environment setting, raised at boot before anything is served."""


class WeightsError(Exception):
    """The weights could not be fetched, verified or loaded; the process must exit."""


_BY_STATUS = {
    cls.status: cls
    for cls in (BadParameter, Unauthorized, NotFound, MethodNotAllowed, RequestTimeout, TooLarge, UriTooLong, NotAnImage,
                Overloaded, HeadersTooLarge, ModelNotReady)
}


def from_http_status(status: int, message: str | None = None) -> ServiceError:
    """The one mapping from a bare HTTP status (the server's, or a route miss) to the service's errors."""
    if status in _BY_STATUS:
        return _BY_STATUS[status](message)
    error = ServiceError(message if status < 500 or status == 501 else None)
    if status < 500 or status == 501:  # a rare status we have no name for (411, 501...)
        error.status, error.title = status, HTTPStatus(status).phrase
    return error
