"""Property vision: Claude's structured analysis of listing photos (ml-services).

- ``images``: decode, refuse, orient, strip metadata and resize a photo.
- ``fetch``: SSRF-safe download of an HTTPS photo URL.
- ``media``: the tenant's photos in the media bucket.
- ``analysis``: the prompt, the output model and exactly-once analysis.
- ``store``: ``property_vision_analyses`` rows and their ``property_vision_links``.
- ``backfill``: the Message Batches backfill of a tenant's photos.
"""
