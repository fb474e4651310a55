from django.conf import settings


def parla(request):
    """Template context every page needs: whether Parla runs against the bundled simulator, and
    whether learners' spoken answers are recorded for their teacher."""
    return {
        "parla_demo_mode": settings.PARLA_DEMO_MODE,
        "parla_record_audio": settings.PARLA_RECORD_AUDIO,
        "parla_audio_retention_days": settings.PARLA_AUDIO_RETENTION_DAYS,
    }
