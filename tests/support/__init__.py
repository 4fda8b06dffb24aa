"""Helpers shared by every tier of the suite: image building, a real registry, Redis topologies,
process trees, an S3 corpus. (The storage layout writer and the S3 endpoint are in bench/, which
may not import tests/.)"""
