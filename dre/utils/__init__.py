"""Small shared helpers: atomic writes, device selection, logging, synthetic-asset banners."""
