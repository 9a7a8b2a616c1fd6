// JSON from the service's HTTP API; a 401 (access control on, no valid session) goes to login.

import { loginUrl } from './urls.js';

export class HttpError extends Error {
  /** `detail`: the service's own explanation ({"detail": "..."}), '' when it gave none. */
  constructor(status, detail = '') {
    super(detail ? `HTTP ${status}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
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
  if (!response.ok) throw new HttpError(response.status, await detailOf(response));
  return { body: await response.json(), headers: response.headers };
}

/**
 * POST `body` as JSON to `url`; the parsed JSON answer. Any status but 2xx throws HttpError
 * with the service's reason, also 401 (publishing may need a token a login does not give).
 */
export async function postJson(url, body) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new HttpError(response.status, await detailOf(response));
  return response.json();
}

/** The text of an error answer's `detail`: a string, or FastAPI's list of field errors. */
async function detailOf(response) {
  let body;
  try {
    body = await response.json();
  } catch {
    return '';
  }
  const detail = body?.detail;
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => (typeof item?.msg === 'string' ? item.msg : ''))
      .filter(Boolean)
      .join('; ');
  }
  return '';
}
