// The pages, in menu order, with the API methods each must be allowed to
// call (by the authorisation table, as the feed's hello lists them).
import {federation} from './page_federation.js';
import {members, agreements} from './page_members.js';
import {interactions, revocations} from './page_live.js';
import {audit, changes, access} from './page_audit.js';
import {M} from './methods.js';

export const pages = [
  {id: 'federation', title: 'Federation', needs: [], create: federation},
  {id: 'members', title: 'Members', needs: [M.ListOrganizations], create: members},
  {id: 'agreements', title: 'Agreements & graph', needs: [M.ListAgreements], create: agreements},
  {id: 'interactions', title: 'Interactions', needs: ['metrics'], create: interactions},
  {id: 'revocations', title: 'Revocations', needs: [M.ListCascades], create: revocations},
  {id: 'audit', title: 'Audit', needs: [M.ListAuditEntries], create: audit},
  {id: 'changes', title: 'Admin changes', needs: [M.ListAdminChanges], create: changes},
  {id: 'access', title: 'Access tokens', needs: [M.ListTokens], create: access},
];
