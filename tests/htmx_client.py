"""A Flask test client that can send htmx headers: ``client.get(url, htmx=True)`` or ``htmx={"target": "x"}``."""

from __future__ import annotations

from flask.testing import FlaskClient


class HtmxClient(FlaskClient):
    def open(self, *args, htmx=None, **kwargs):
        if htmx:
            headers = dict(kwargs.pop("headers", None) or {})
            headers["HX-Request"] = "true"
            if isinstance(htmx, dict):
                for key, header in (("target", "HX-Target"), ("trigger", "HX-Trigger"),
                                    ("current_url", "HX-Current-URL")):
                    if key in htmx:
                        headers[header] = htmx[key]
                if htmx.get("boosted"):
                    headers["HX-Boosted"] = "true"
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)
