"""DiffusionRig-Emo: personalized facial appearance editing with DiffusionRig.

The physical face conditions (albedo, normals, SH shading) come from DECA or EMOCA FLAME codes.
Each workflow rule calls one ``dre`` subcommand; see ``dre --help`` and docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
