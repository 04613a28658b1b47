"""What the rules refuse, said without HTTP.

The data modules (accounts, sessions, throttle) raise these, so that the
blueprints, the command line and anything else can call them; errors.py
gives each its problem document at the HTTP edge.
"""


class DomainError(Exception):
    """A request the rules refuse; not a bug."""


class UsernameTaken(DomainError):
    pass


class UserNotFound(DomainError):
    pass


class LastAdministrator(DomainError):
    """The change would leave no enabled administrator."""


class InvalidRefreshToken(DomainError):
    """Unknown, expired or revoked."""


class RefreshTokenReused(InvalidRefreshToken):
    """An already-rotated token came back: its whole session has been revoked."""


class LockedOut(DomainError):
    """Too many failed logins for one username from one address."""

    def __init__(self, retry_after):
        super().__init__(f"locked out for {retry_after} s")
        self.retry_after = retry_after


class InvalidCredentials(DomainError):
    """The credentials prove no user: unknown, wrong, or no longer the user's.

    The last is a password that was right when checked, but changed (or its
    user was deleted) before the request could act on it.
    """


class AccountGone(DomainError):
    """The authenticated user was deleted while the request was under way."""
