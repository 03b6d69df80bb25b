"""The assets folder: what it holds, where each file comes from, and whether the files are usable.

``catalog`` names the files and where to obtain them (standard library only, so the align environment
and the loaders in :mod:`dre.face3d` can import it); ``check`` holds the per-file validators (the real
loaders) and validates a folder through them (what ``dre assets check`` prints).
``fetch`` (with ``http``) downloads the freely downloadable files; ``add`` (with ``archive``,
``recognise``) places the files a user downloaded after registering; ``placement`` records what those two
placed; ``config`` holds their ``Config`` dataclasses (standard library only). This ``__init__`` imports
nothing on purpose: the face3d loaders import ``dre.assets.catalog``, and ``check`` imports those loaders.
"""
