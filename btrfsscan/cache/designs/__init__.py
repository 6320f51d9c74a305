"""The cache models, one module each (``MODEL = CacheModel(...)``); :mod:`..registry` finds them.

Importing one design module directly (``from btrfsscan.cache.designs import
content_dedupe``, for its computation) loads the registry first, which loads
every design module in turn, so no module is seen half-initialized.
"""

from .. import registry  # noqa: F401  (see above)
