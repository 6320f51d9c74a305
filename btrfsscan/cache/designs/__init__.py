"""The cache models, one module each (``MODEL = CacheModel(...)``); :mod:`..registry` finds them."""
