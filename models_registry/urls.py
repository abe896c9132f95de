from django.urls import path

from models_registry import views

prefix = "t/<slug:tenant_slug>/"
urlpatterns = [
    path(prefix + "models/", views.ModelListView.as_view(), name="model-list"),
    path(prefix + "models/lookup/", views.HubLookupView.as_view(), name="model-lookup"),
    path(prefix + "models/<int:pk>/", views.ModelDetailView.as_view(), name="model-detail"),
    path(prefix + "models/<int:pk>/fit/", views.ModelFitView.as_view(), name="model-fit"),
    path(
        prefix + "models/<int:pk>/<slug:action>/",
        views.ModelActionView.as_view(),
        name="model-action",
    ),
    path(prefix + "hub-token/", views.HubTokenView.as_view(), name="hub-token"),
]
