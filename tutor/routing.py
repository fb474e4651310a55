from django.urls import path

from tutor import consumers

websocket_urlpatterns = [path("ws/tutor/", consumers.TutorConsumer.as_asgi())]
