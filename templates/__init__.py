"""Jinja2 email templates, named by audience and kind."""
