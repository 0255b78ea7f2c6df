"""`flywheel serve`: the lake in a browser: the report, live; galleries of the scenes behind
each alert, selection and batch; and the touchpoints where a person decides (approve or reject a
batch waiting for approval, acknowledge an alert), each a POST that needs the token.

>>> from flywheel.lake import Lake
>>> app = create_app(Lake(lake), token="s3cret")
>>> sorted(r.path for r in app.routes if r.path.startswith("/api/batches"))
['/api/batches/{batch_id}/approve', '/api/batches/{batch_id}/reject']
"""

from serve.app import create_app, is_loopback, run

__all__ = ["create_app", "is_loopback", "run"]
