"""The company's identity: SCIM provisioning from its IdP (`app.identity.scim`)."""
