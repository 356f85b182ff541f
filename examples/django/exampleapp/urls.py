from django.urls import path

from . import billing, views, webhooks

urlpatterns = [
    path("", views.home),
    path("healthz", views.healthz),
    path("reports", views.reports),
    path("exports/report.csv", views.export_csv),
    path("api/generate", views.generate),
    path("api/stream", views.stream),
    path("billing", billing.page),
    path("billing/<str:action>", billing.action),
    path("webhooks/tollgate", webhooks.tollgate_events),
]
