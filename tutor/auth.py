"""Who may open the tutor websocket (a logged-in user with a Learner profile: assessments.roles.learner_for).

The close codes are sent *after* accepting the handshake: a close before accept becomes an HTTP 403
on the handshake, and browsers then see only code 1006, so the reason would be lost.
The codes are defined in tutor/realtime/wire.py; the browser's copy is static/tutor/protocol.js.
"""

from tutor.realtime.wire import CLOSE_FORBIDDEN, CLOSE_NOT_AUTHENTICATED


def refusal_code(user) -> int:
    """The close code for a user this socket does not admit: 4401 if anonymous, 4403 otherwise."""
    return CLOSE_NOT_AUTHENTICATED if user is None or not user.is_authenticated else CLOSE_FORBIDDEN
