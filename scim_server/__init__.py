"""joyn-scim: the per-tenant SCIM 2.0 server Microsoft Entra ID provisions into."""

__version__ = "0.1.0"
