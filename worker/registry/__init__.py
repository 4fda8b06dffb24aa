"""What the registry defines, as the warmer reads it: repository names and digests
(:mod:`reference`), media types (:mod:`mediatypes`), manifests (:mod:`manifest`), blob
descriptors (:mod:`descriptor`), notification envelopes and events (:mod:`events`), and the
registry generations whose caches differ (:mod:`versions`). Plain data and parsing, no I/O: it
sits just above the errors, so the settings, the cache, the storage and the receiver all read
one spelling of each."""
