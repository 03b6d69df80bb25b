"""Stage ``extract``: aligned album images → one FLAME-codes row per image (``codes.parquet``)."""
