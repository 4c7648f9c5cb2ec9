"""Ingress: browser hits (/tr), the first-party script (/gw.js) and server events from backends."""
