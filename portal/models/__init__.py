"""All models, re-exported so ``from portal.models import Company`` works everywhere."""

from portal.models.alerts import AlertChannel, AlertRule, AlertState
from portal.models.api_tokens import API_SCOPES, ApiToken
from portal.models.audit import AuditEvent
from portal.models.crm import (
    BUILTIN_CRM_FIELDS,
    CRM_MODELS,
    CRM_TYPE_LABELS,
    Company,
    Contact,
    CrmField,
    CrmFieldType,
    CrmList,
    CrmType,
    ListItem,
    Project,
    crm_field,
    crm_fields,
    forget_user_fields,
    user_crm_fields,
)
from portal.models.erp import (
    ACTOR_CRM_TYPE,
    CRM_PRIORITY_ID,
    ZERO_GUID,
    ActorType,
    ActorTypeConfig,
    ConflictPolicy,
    Connection,
    ConnectionAccess,
    Connector,
    ErpField,
    FieldAccess,
    FieldType,
    ListItemMapping,
    SyncSettings,
)
from portal.models.issues import SyncIssueIgnore
from portal.models.sync import (
    ACTIVE_RUN_STATUSES,
    Link,
    LinkStatus,
    RunKind,
    RunStatus,
    SyncChange,
    SyncJournal,
    SyncRun,
)
from portal.models.user_fields import UserField
from portal.models.users import Role, User, UserGroup

__all__ = [
    "API_SCOPES", "ApiToken", "BUILTIN_CRM_FIELDS", "ACTIVE_RUN_STATUSES", "ACTOR_CRM_TYPE", "AlertChannel", "AlertRule", "AlertState", "CRM_MODELS", "CRM_PRIORITY_ID", "CRM_TYPE_LABELS",
    "ZERO_GUID", "ActorType", "ActorTypeConfig", "AuditEvent", "Company", "ConflictPolicy", "Connection",
    "ConnectionAccess", "Connector", "Contact", "CrmField", "CrmFieldType", "CrmList", "CrmType", "ErpField",
    "FieldAccess", "FieldType", "Link", "LinkStatus", "ListItem", "ListItemMapping", "Project", "Role",
    "RunKind", "RunStatus", "SyncChange", "SyncIssueIgnore", "SyncJournal", "SyncRun", "SyncSettings", "User", "UserField", "UserGroup", "crm_field", "crm_fields",
    "forget_user_fields", "user_crm_fields",
]
