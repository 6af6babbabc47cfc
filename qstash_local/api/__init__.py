"""HTTP handlers of the QStash v2 REST API, one module per resource."""
