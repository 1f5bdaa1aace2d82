"""edgetune bench stage."""
