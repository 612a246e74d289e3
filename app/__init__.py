"""aclaudit: access-control audit service for training datasets."""
