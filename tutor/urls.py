from django.urls import path

from tutor import views

app_name = "tutor"
urlpatterns = [
    path("session/", views.session, name="session"),
    path("session/languages/", views.languages, name="languages"),
    path("teacher/live/", views.teacher_live, name="teacher_live"),
]
