"""Safety: the one restricted unpickler, output ownership, and durable atomic writes.

- :mod:`dre.safety.unpickle` reads the pickles users supply (FLAME, DECA's landmark ``.npy``, original
  DiffusionRig LMDB values) without running anything they name.
- :mod:`dre.safety.ownership` decides which existing files and folders a command may replace.
- :mod:`dre.safety.atomic` publishes outputs with a rename only after their bytes are on disk.
"""
