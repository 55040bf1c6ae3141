from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("orders/", views.order),
    path("_tasks/", views.run_task),
]
