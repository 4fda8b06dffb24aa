"""The configuration: everything a user sets, read and checked in one place.

- :mod:`settings`: the ``WARMER_*`` environment (and ``.env``) read once into one typed object
  whose repr hides secrets; start here.
- :mod:`defaults`: the defaults of settings that code below the settings takes too (the dedup
  window, the dead-letter cap, the pull flush interval), spelled once.
- :mod:`schedules`: a beat job's schedule (seconds, or a crontab line).
- :mod:`secretvalues`: which token a registry can send, placeholders, and the credentials of
  URLs hidden for logs and messages (in a URL given whole, or anywhere in a text).
- :mod:`connections`: the warmer's Redis URLs (one server, Sentinel, Cluster, TLS, ACL users)
  and the clients built from them.
- :mod:`storageurl`: the registry's storage as one URL.
- :mod:`registryfile`: the registry's own ``config.yml``, read for the settings and written for
  a registry to paste.

It sits above the registry's formats (it reads a registry generation and a registry's config)
and below everything that uses a setting. No framework is imported here.
"""
