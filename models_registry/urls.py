from django.urls import path

from models_registry import views

urlpatterns = [
    path("t/<slug:tenant_slug>/models/", views.ModelListView.as_view(), name="model-list"),
]
