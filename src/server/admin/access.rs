//! Who may do what on the admin API: a pure function of the caller's role and
//! tenant, the action and the tenant it is about. No I/O, so every cell of the
//! role × action × tenant table is tested below.
//!
//! The order of the checks is the contract (SPEC section 4):
//! 1. a tenant-scoped caller asking about another tenant gets `404`, exactly
//!    what an unknown tenant gets, so tenant names cannot be probed;
//! 2. a role that may not take the action gets `403 forbidden`;
//! 3. only then is the request itself looked at (unknown tenant: `404`, bad
//!    field: `400`).

use crate::auth::token::Role;

/// Every kind of thing the admin API does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Explain,
    ListKeys,
    CreateKey,
    RevokeKey,
    ListCredentials,
    SetCredential,
    DeleteCredential,
    ReadUsage,
    ReadAudit,
    Reload,
}

/// The caller, as its admin token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub token_id: String,
    pub role: Role,
    /// Set exactly for the tenant-scoped roles.
    pub tenant: Option<String>,
}

/// Why a call is refused before it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Another tenant's resource: answered like an unknown one.
    NotFound,
    /// The role may not take this action.
    Forbidden,
}

impl Action {
    #[cfg(test)]
    pub(crate) const ALL: [Action; 10] = [
        Action::Explain,
        Action::ListKeys,
        Action::CreateKey,
        Action::RevokeKey,
        Action::ListCredentials,
        Action::SetCredential,
        Action::DeleteCredential,
        Action::ReadUsage,
        Action::ReadAudit,
        Action::Reload,
    ];

    /// The audit log's name for it (only actions that change something, and
    /// explain, are audited).
    pub(crate) fn audit_name(self) -> Option<&'static str> {
        match self {
            Action::Explain => Some("explain"),
            Action::CreateKey => Some("key.create"),
            Action::RevokeKey => Some("key.revoke"),
            Action::SetCredential => Some("credential.put"),
            Action::DeleteCredential => Some("credential.delete"),
            Action::Reload => Some("reload"),
            Action::ListKeys | Action::ListCredentials | Action::ReadUsage | Action::ReadAudit => {
                None
            }
        }
    }

    /// Whether `role` may take this action (on a tenant it may see).
    pub(crate) fn allowed_for(self, role: Role) -> bool {
        match role {
            Role::PlatformAdmin => true,
            Role::TenantAdmin => !matches!(self, Action::Reload),
            Role::Viewer => matches!(
                self,
                Action::Explain
                    | Action::ListKeys
                    | Action::ListCredentials
                    | Action::ReadUsage
                    | Action::ReadAudit
            ),
            Role::Auditor => matches!(self, Action::ReadUsage | Action::ReadAudit),
        }
    }
}

impl Caller {
    /// Whether this caller may take `action` about `tenant` (`None`: an
    /// action about no tenant in particular, such as a reload, or a read
    /// across tenants).
    pub(crate) fn may(&self, action: Action, tenant: Option<&str>) -> Result<(), Denied> {
        if let (Some(own), Some(asked)) = (&self.tenant, tenant)
            && own != asked
        {
            return Err(Denied::NotFound);
        }
        if action.allowed_for(self.role) {
            Ok(())
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// The tenant a read is limited to: a tenant-scoped caller's own, whatever
    /// it asked (after [`Caller::may`] refused another one); else what was asked.
    pub(crate) fn tenant_filter<'a>(&'a self, asked: Option<&'a str>) -> Option<&'a str> {
        self.tenant.as_deref().or(asked)
    }

    /// `token:<id>`, as the audit log names the actor.
    pub(crate) fn actor(&self) -> String {
        crate::audit::token_actor(&self.token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, tenant: Option<&str>) -> Caller {
        Caller {
            token_id: "abcd1234".into(),
            role,
            tenant: tenant.map(Into::into),
        }
    }

    #[test]
    fn platform_admin_may_do_everything_for_every_tenant() {
        let c = caller(Role::PlatformAdmin, None);
        for a in Action::ALL {
            assert_eq!(c.may(a, Some("acme")), Ok(()), "{a:?}");
            assert_eq!(c.may(a, None), Ok(()), "{a:?}");
        }
    }

    #[test]
    fn another_tenant_is_not_found_before_any_role_check() {
        for role in [Role::TenantAdmin, Role::Viewer] {
            let c = caller(role, Some("acme"));
            for a in Action::ALL {
                assert_eq!(
                    c.may(a, Some("globex")),
                    Err(Denied::NotFound),
                    "{role:?} {a:?}"
                );
            }
        }
    }

    #[test]
    fn each_role_may_take_exactly_its_actions() {
        use Action::*;
        let table: [(Role, &[Action]); 3] = [
            (
                Role::TenantAdmin,
                &[
                    Explain,
                    ListKeys,
                    CreateKey,
                    RevokeKey,
                    ListCredentials,
                    SetCredential,
                    DeleteCredential,
                    ReadUsage,
                    ReadAudit,
                ],
            ),
            (
                Role::Viewer,
                &[Explain, ListKeys, ListCredentials, ReadUsage, ReadAudit],
            ),
            (Role::Auditor, &[ReadUsage, ReadAudit]),
        ];
        for (role, allowed) in table {
            let tenant = role.is_tenant_scoped().then_some("acme");
            let c = caller(role, tenant);
            for a in Action::ALL {
                let want = if allowed.contains(&a) {
                    Ok(())
                } else {
                    Err(Denied::Forbidden)
                };
                assert_eq!(c.may(a, Some("acme")), want, "{role:?} {a:?}");
            }
        }
    }

    #[test]
    fn a_scoped_read_is_limited_to_the_own_tenant() {
        let c = caller(Role::Viewer, Some("acme"));
        assert_eq!(c.tenant_filter(None), Some("acme"));
        let a = caller(Role::Auditor, None);
        assert_eq!(a.tenant_filter(None), None);
        assert_eq!(a.tenant_filter(Some("globex")), Some("globex"));
    }
}
