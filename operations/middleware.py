"""Response headers for the API: ``Cache-Control: no-store`` on every /api/ and /metrics answer
(drain state and tokens' results must never sit in a browser's or a proxy's cache)."""

from __future__ import annotations

from django.utils.cache import patch_cache_control

NO_STORE_PREFIXES = ("/api/", "/metrics")


class NoStoreApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(NO_STORE_PREFIXES):
            patch_cache_control(response, no_store=True)
        return response
