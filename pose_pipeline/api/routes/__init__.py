"""The API's endpoints, one module per resource: jobs, uploads in parts, the viewer, health."""
