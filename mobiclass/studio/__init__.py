"""The studio: a local web application from photos to a deployed model (``mobiclass studio``).

db (records, Alembic migrations) < store (photos by content) < archive (zips within bounds) < projects (what a person
does) < jobs (the queue in the database) < runners (training and export in a child process) < worker (the worker
process) < schemas, deps, routers, app (HTTP) < server (uvicorn and the worker process beside it).
"""
