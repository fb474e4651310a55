"""Who may open the tutor websocket (a logged-in user with a Learner profile: assessments.roles.learner_for).

The close codes are sent *after* accepting the handshake: a close before accept becomes an HTTP 403
on the handshake, and browsers then see only code 1006, so the reason would be lost.
The browser's copy of the codes (with 4409 from tutor/consumers.py) is static/tutor/protocol.js.
"""

CLOSE_NOT_AUTHENTICATED = 4401  # anonymous: log in first
CLOSE_FORBIDDEN = 4403  # logged in, but not allowed here (no Learner profile; not a teacher)


def refusal_code(user) -> int:
    """The close code for a user this socket does not admit: 4401 if anonymous, 4403 otherwise."""
    return CLOSE_NOT_AUTHENTICATED if user is None or not user.is_authenticated else CLOSE_FORBIDDEN
