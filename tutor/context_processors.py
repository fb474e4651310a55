from django.conf import settings


def parla(request):
    """Template context every page needs: whether Parla runs against the bundled simulator."""
    return {"parla_demo_mode": settings.PARLA_DEMO_MODE}
