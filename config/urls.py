from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import include, path

from tutor.views import home

admin.site.site_header = "Parla administration"
admin.site.site_title = "Parla admin"
admin.site.index_title = "Learners, sessions and assessments"



def admin_login(request, extra_context=None):
    """The admin's login, except for a logged-in account that is not staff (a learner): the admin
    would offer it a login form for another account; Parla says the admin is not for it (403)."""
    if request.user.is_authenticated and not request.user.is_staff:
        raise PermissionDenied("The admin is for teachers, and this account is not a teacher's.")
    return admin.site.login(request, extra_context)


urlpatterns = [
    path("", home, name="home"),
    path("admin/login/", admin_login),  # before the admin's own
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("tutor.urls")),
    path("", include("assessments.urls")),
]
