"""The HTTP edge: the server and its protocol, the functions-framework entry, the per-request edge (limits, deadline,
API keys, the log line), the route table, request bodies and the OpenAPI document. Everything web lives here."""
