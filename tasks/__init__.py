"""Celery tasks only: each parses its arguments, calls a plain function of :mod:`worker` and
returns that function's counters. Business logic lives in :mod:`worker`, testable without Celery.
"""
