"""Domain errors, each with a stable `code` for sockets and an HTTP status for REST."""


class DomainError(Exception):
    code = "error"
    status = 400
    title = "Bad request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPayload(DomainError):
    code = "invalid_payload"
    title = "Invalid request"


class NotInRoom(DomainError):
    code = "not_in_room"
    status = 403
    title = "Not in room"


class RoomFull(DomainError):
    code = "room_full"
    status = 409
    title = "Room full"


class StoreUnavailable(DomainError):
    code = "store_unavailable"
    status = 503
    title = "Store unavailable"


class SessionNotFound(DomainError):
    code = "session_not_found"
    status = 404
    title = "Session not found"


class SessionExpired(DomainError):
    code = "session_expired"
    status = 410
    title = "Session expired"


class SessionExists(DomainError):
    code = "session_exists"
    status = 400
    title = "Session already exists"


class LimitExceeded(DomainError):
    code = "limit_exceeded"
    status = 413
    title = "Limit exceeded"


class FileNotFound(DomainError):
    code = "file_not_found"
    status = 404
    title = "File not found"


class NotAllowed(DomainError):
    code = "not_allowed"
    status = 403
    title = "Not allowed"


class BaseTooOld(DomainError):
    code = "base_too_old"
    status = 409
    title = "Base too old"


class ClusterUnavailable(DomainError):
    code = "cluster_unavailable"
    status = 503
    title = "Cluster unavailable"


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class ReadOnly(DomainError):
    code = "read_only"
    status = 403
    title = "Read only"


class Unauthorized(DomainError):
    """No valid token where one is needed (`code`: which problem)."""

    status = 401
    title = "Unauthorized"

    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(message)
        self.code = code


class InviteUsed(DomainError):
    code = "invite_used"
    status = 409
    title = "Invite used"


class VersionNotFound(DomainError):
    code = "version_not_found"
    status = 404
    title = "Version not found"
