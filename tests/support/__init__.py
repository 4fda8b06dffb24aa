"""Helpers of the test suite: image building, a real registry, a synthetic store."""
