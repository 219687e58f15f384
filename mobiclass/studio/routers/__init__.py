"""The studio API's routes, one module per resource."""
