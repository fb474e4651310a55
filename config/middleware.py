"""Response headers Django does not set itself."""

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
