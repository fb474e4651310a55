from django.contrib import admin
from django.urls import include, path

from tutor.views import home

admin.site.site_header = "Parla administration"
admin.site.site_title = "Parla admin"
admin.site.index_title = "Learners, sessions and assessments"

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("tutor.urls")),
    path("", include("assessments.urls")),
]
