"""edgetune serve stage."""
