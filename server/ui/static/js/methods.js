// API methods the pages call, by their full gRPC names (the keys of the
// server's authorisation table).
const m = (svc, name) => `/trustfed.v1.${svc}/${name}`;

export const M = {
  Status: m('ClusterService', 'Status'),
  ListOrganizations: m('RegistryService', 'ListOrganizations'),
  ListIssuers: m('AdminService', 'ListIssuers'),
  GetFederationPolicy: m('AdminService', 'GetFederationPolicy'),
  ListAgreements: m('AdminService', 'ListAgreements'),
  GetOrganizationGraph: m('CascadeService', 'GetOrganizationGraph'),
  ListCascades: m('CascadeService', 'ListCascades'),
  GetSignedTreeHead: m('AuditService', 'GetSignedTreeHead'),
  ListAuditEntries: m('AuditService', 'ListAuditEntries'),
  GetInclusionProof: m('AuditService', 'GetInclusionProof'),
  ListAdminChanges: m('AdminService', 'ListAdminChanges'),
  ListTokens: m('AccessService', 'ListTokens'),
};

// notPermitted is the note a section shows instead of data its reader may not see.
export function notPermitted(h, role, method) {
  return h('p', {class: 'denied'}, `Not permitted: the ${role} role may not call ${method.replace(/^\/trustfed\.v1\./, '').replace('/', '.')}.`);
}
