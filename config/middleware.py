"""Response headers Django does not set itself, and Parla's error pages under DEBUG too."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import Resolver404, resolve
from django.views.defaults import page_not_found, permission_denied

logger = logging.getLogger(__name__)

# The tutor page records the microphone from its own origin; nothing else (no embedding frame, no
# other origin) may ask for it, and Parla uses no camera or location.
PERMISSIONS_POLICY = "microphone=(self), camera=(), geolocation=()"


class PermissionsPolicyMiddleware:
    """Adds `Permissions-Policy` to every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


class ErrorPagesMiddleware:
    """Parla's 404 and 403 pages whatever DEBUG says, and expected refusals logged in one line.

    With DEBUG on (`scripts/run`), Django answers an unknown URL with its technical page listing every
    URL, and logs each PermissionDenied with a traceback; both are for bugs, and these are not bugs.
    The pages are the ones Django serves with DEBUG off (`django.views.defaults`). Below
    CommonMiddleware, so a 404 still gets APPEND_SLASH's redirect; below the auth and message
    middleware, so the pages know who is asking.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404 as exc:
            return self.process_exception(request, exc)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, Http404):
            logger.info("not found", extra={"path": request.path, "user_id": request.user.pk})
            return logged(page_not_found(request, exception))
        if isinstance(exception, PermissionDenied):
            logger.info("forbidden", extra={"path": request.path, "user_id": request.user.pk, "reason": str(exception)})
            return logged(permission_denied(request, exception))
        return None


def logged(response):
    """Marks `response` as logged already, as Django's own handlers do (django.utils.log.log_response),
    so django.request does not log it again as a warning."""
    response._has_been_logged = True
    return response
