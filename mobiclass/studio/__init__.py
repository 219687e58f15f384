"""The studio: a local web application from photos to a deployed model (``mobiclass studio``).

db (records, Alembic migrations) < store (photos by content) < projects (what a person does) < jobs (training and
export in a worker) < api (HTTP) < server (uvicorn and the worker process).
"""
