from django.urls import path

from assessments import views

app_name = "assessments"
urlpatterns = [
    path("history/", views.history, name="history"),
    path("history/<int:pk>/", views.history_detail, name="history_detail"),
    path("audio/turn/<int:pk>/", views.turn_audio, name="turn_audio"),
]
