// Who this browser is to the service (GET api/session), asked once per page: how it identified
// itself (a login session can log out) and, after a login with a name, that name.

import { getJson } from './api.js';

let asked = null;

/** The session's answer ({credential, grants, name, ...}), or null if the service was not
 *  reachable (the socket reports that). */
export function session() {
  asked ??= getJson('api/session').catch(() => null);
  return asked;
}

/** The logged-in name, else null. */
export async function sessionName() {
  const name = (await session())?.name;
  return typeof name === 'string' && name.trim() ? name : null;
}
