"""Reference credit website: publication API and public portal.

- ``app``: :func:`~website.app.create_website_app` and :func:`~website.app.run_website`;
- ``api``: the publication API (PUT/DELETE/GET ``/api/v1/publications/{id}``);
- ``portal`` and ``pages``: the public pages in Chinese (handlers, and pure rendering);
- ``model``, ``privacy``, ``labels``, ``pagination``, ``markup``: pure rules and helpers;
- ``repository``: the database (SQLite; PostgreSQL not implemented);
- ``metrics``: Prometheus metrics.

See ``website/README.md`` for the API contract and the schema.
"""
