"""Ingress: browser hits (/tr) now; server events from backends later."""
