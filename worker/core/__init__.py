"""The warmer's work, as plain functions over a cache, a store and the state: the cached blob
service, what a batch of events does, re-warm and reconcile. No Celery, no web framework."""
