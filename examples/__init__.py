"""Example services that integrate with aclaudit through ``app.client``."""
