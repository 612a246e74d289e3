"""The SCIM 2.0 service provider (RFC 7643/7644) the company's IdP pushes its users and
groups to, under /scim/v2.

protocol     the models, what the service announces, reading requests and writing responses
discovery    ServiceProviderConfig, ResourceTypes, Schemas
router       Users and Groups (HTTP only)
users        Users: `user:<userName>` principals
groups       Groups: `group:<id>` principals and their members
group_patch  a Group PATCH as one membership delta (pure)
filters      a SCIM filter as a SQL clause
mapping      userName and displayName to principals (pure)
repository   every query
errors       SCIM error documents
"""

from app.identity.scim.discovery import router as discovery_router
from app.identity.scim.router import router

__all__ = ["discovery_router", "router"]
