"""The incident report (`GET /v1/reports/exposure`, `aclaudit report`): exposure windows over a
period, who could read, who did, and the log's integrity; as JSON, Markdown or one HTML page."""
