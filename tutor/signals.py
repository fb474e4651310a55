"""Django signals the live part listens to: a learner who logs out ends their running session.

Logging out (in this tab or another one) leaves the tutor socket authenticated by the scope it
opened with; the learner's connections share a channel-layer group (tutor.consumers.learner_group),
so the logout tells them to stop, and each ends its session the way a disconnect does.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

logger = logging.getLogger(__name__)


@receiver(user_logged_out, dispatch_uid="tutor.end_sessions_on_logout")
def end_sessions_on_logout(sender, request, user, **kwargs):
    from assessments.roles import learner_for  # at call time: the app registry is ready
    from tutor.consumers import learner_group

    learner = learner_for(user) if user is not None else None
    layer = get_channel_layer()
    if learner is None or layer is None:
        return
    try:
        async_to_sync(layer.group_send)(learner_group(learner.pk), {"type": "session.logged_out"})
    except Exception:  # the logout itself must succeed even if the channel layer is down
        logger.exception("logout not sent to running sessions", extra={"learner_id": learner.pk})
