"""The application layer: what each command computes, as functions returning result objects.

It opens nothing on its own and prints nothing: a command of
:mod:`btrfsscan.present` opens the filesystem, calls one of these functions
and renders the result. ``facts``: the filesystem as the report describes it;
``report``: the page-cache report; ``files``: file maps, listings and the
resolution of subvolume, path and inode references; ``volume``: superblocks,
chunks and logical mappings.
"""
