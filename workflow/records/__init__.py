"""Signed records: document model -> reportlab PDF -> PAdES signature -> write-once archive.

Each module has one job: ``document`` (what a record says), ``layout`` (how it looks, read from
templates/records), ``render`` (PDF bytes), ``embed`` (the events payload inside the PDF),
``pki`` (site CA and signing keys), ``sign`` (PAdES B-B), ``verify`` (named checks),
``blobstore`` (content-addressed, write-once files). Nothing here knows about the case engine.
"""
