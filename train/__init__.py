"""edgetune train stage."""
