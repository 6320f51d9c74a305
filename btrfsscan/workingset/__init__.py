"""The page-cache models over a working set (resident pages only), from a live capture or an image."""
