"""edgetune export stage."""
