"""API routers, one per resource family. Routes are thin: they call ``dosewatch.store.service``."""
