"""The UI at ``/ui``: server-rendered pages (Jinja2 templates, a stylesheet, no front-end
build) over the registry's parts, for people who manage prompts.

- :mod:`.settings` — the ``ui`` section of ``lockgate.yaml`` (:class:`UISettings`).
- :mod:`.sessions` — signed session cookies holding a key's id (never its secret) and a
  CSRF token; the key is checked on every request, so revoking it ends the session.
- :mod:`.routes` — the router (``build_router(settings)``), mounted by :mod:`gateway.app`:
  sign-in and sign-out, and the shared request checks (session, CSRF, form bodies).
- :mod:`.prompts` — the prompt pages: list, timeline, diff, editor.

This module imports nothing heavy: :mod:`gateway.config` imports :mod:`.settings`.
"""
