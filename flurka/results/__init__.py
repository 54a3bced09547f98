"""Turning run records and measurements into tables and plots."""
