"""The append-only audit log: `portal.audit.log` writes it, `labels` says how it reads, `paging` pages it."""

from portal.audit.log import AuditLog, AuditLogIsAppendOnly, audit_values, record_audit

__all__ = ["AuditLog", "AuditLogIsAppendOnly", "audit_values", "record_audit"]
