from django.urls import path

from tutor import consumers

websocket_urlpatterns = [
    path("ws/tutor/", consumers.TutorConsumer.as_asgi()),
    path("ws/teacher/live/", consumers.TeacherLiveConsumer.as_asgi()),
]
