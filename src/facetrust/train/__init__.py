"""Training: the loop, losses, fault injection, calibration, fusion, evaluation and search.

Needs the ``train`` extra (``pip install 'facetrust[train]'``); without it, importing this
package raises ``MissingExtraError`` naming that command.
"""

from facetrust.extras import require as _require

_require("train")
