"""What the registry defines: repository names and digests, media types, manifests,
descriptors and notification events. Plain data and parsing: no I/O, no Redis, no framework."""
