"""Fitting into the hospital: FHIR R4 export, GS1 barcode scanning, scan-failure reports."""
