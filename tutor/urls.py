from django.urls import path

from tutor import views

app_name = "tutor"
urlpatterns = [
    path("session/", views.session, name="session"),
    path("session/languages/", views.languages, name="languages"),
    path("history/", views.history, name="history"),
    path("teacher/live/", views.teacher_live, name="teacher_live"),
    path("history/<int:pk>/", views.history_detail, name="history_detail"),
]
