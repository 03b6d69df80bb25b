"""Stage ``pack``: aligned images + FLAME codes → rendered buffers in a versioned LMDB."""
