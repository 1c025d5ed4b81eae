"""Jinja templates for the HTML and Markdown reports (ships as ``lazarus_report.templates``)."""
