"""Authentication backends."""

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for logins that come over the web.

    `authenticate()` without a request (a management command, the shell, a test) is not a login from
    the network and has no address to throttle; django-axes would raise for it, so it is left to the
    next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
