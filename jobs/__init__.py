"""Thin entry points: parse arguments, build objects from core, run, print a short summary."""
