"""Transparency for every employee: who read my data, and what may I read (`/v1/me`)."""
