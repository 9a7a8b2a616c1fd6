// JSON from the service's HTTP API; a 401 (access control on, no valid session) goes to login.

import { loginUrl } from './urls.js';

export class HttpError extends Error {
  constructor(status) {
    super(`HTTP ${status}`);
    this.status = status;
  }
}

export function goToLogin() {
  location.assign(loginUrl());
}

/** The parsed JSON body of `url`; throws HttpError for any status but 2xx (after 401: login). */
export async function getJson(url) {
  return (await getJsonAndHeaders(url)).body;
}

/** As getJson, with the response's headers: `{body, headers}`. */
export async function getJsonAndHeaders(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (response.status === 401) goToLogin();
  if (!response.ok) throw new HttpError(response.status);
  return { body: await response.json(), headers: response.headers };
}
