"""The HTTP service: REST API, compatibility routes and the web page.

>>> from facetrust.serve import ServeSettings, create_app
>>> app = create_app(ServeSettings(model="my.safetensors"))   # loads nothing until startup
"""

from facetrust.extras import require as _require

_require("serve")

from facetrust.serve.app import create_app
from facetrust.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
