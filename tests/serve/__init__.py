"""Tests for the package of the same name."""
