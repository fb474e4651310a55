"""Who may open the tutor websocket: a logged-in user with a Learner profile.

The close codes are sent *after* accepting the handshake: a close before accept becomes an HTTP 403
on the handshake, and browsers then see only code 1006, so the reason would be lost.
"""

from assessments.models import Learner

CLOSE_NOT_AUTHENTICATED = 4401  # anonymous: log in first
CLOSE_NOT_A_LEARNER = 4403  # logged in, but no Learner profile (e.g. a teacher-only account)


def learner_for(user) -> Learner | None:
    """The Learner profile of `user`, or None for anonymous users and users without one (sync)."""
    if user is None or not user.is_authenticated:
        return None
    return Learner.objects.filter(user_id=user.pk).select_related("user").first()
