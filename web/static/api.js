// REST client for docs/protocol.md: auth, languages, history. Every failure becomes an ApiError.

const TOKEN_KEY = 'execstream.token';
let memoryToken = null; // fallback when localStorage is unavailable

export class ApiError extends Error {
  constructor(status, code, detail, errors = []) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.errors = errors;
  }

  /** A one-line, human-readable description, including validation details and the code. */
  describe() {
    let text = this.detail;
    if (this.errors.length) {
      const parts = this.errors.map((e) => {
        const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== 'body').join('.') : '';
        return where ? `${where}: ${e.msg}` : String(e.msg);
      });
      text += ` (${parts.join('; ')})`;
    }
    return text;
  }
}

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* storage disabled: the session lasts until reload */
  }
  memoryToken = token;
}

export function clearToken() {
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* ignore */
  }
  memoryToken = null;
}

function currentToken() {
  return getToken() ?? memoryToken;
}

let unauthorizedHandler = () => {};
/** Called with the ApiError whenever an authenticated request answers 401. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

async function errorFrom(response) {
  let body = null;
  let text = '';
  try {
    text = await response.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  let detail = body && body.detail;
  if (detail == null) {
    const snippet = text && !body ? `: ${text.slice(0, 200)}` : '';
    detail = `The server answered ${response.status} ${response.statusText}${snippet}`.trim();
  } else if (typeof detail !== 'string') {
    detail = JSON.stringify(detail);
  }
  const code = (body && typeof body.code === 'string' && body.code) || `http_${response.status}`;
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  return new ApiError(response.status, code, detail, errors);
}

/**
 * Send one request. `json` sends a JSON body, `form` a form-encoded one.
 * Resolves to {data, headers}; rejects with ApiError.
 */
export async function request(method, path, { json, form, auth = true } = {}) {
  const headers = { Accept: 'application/json' };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  if (auth) {
    const token = currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach the server. Check your connection and try again.');
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && auth) unauthorizedHandler(error);
    throw error;
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        throw new ApiError(response.status, 'invalid_response', `The server sent something that is not JSON (${method} ${path})`);
      }
    }
  }
  return { data, headers: response.headers };
}

export async function register(username, password) {
  return (await request('POST', '/api/v1/auth/register', { json: { username, password }, auth: false })).data;
}

/** OAuth2 password flow; stores and returns the token. */
export async function signIn(username, password) {
  const { data } = await request('POST', '/api/v1/auth/token', { form: { username, password }, auth: false });
  if (!data || typeof data.access_token !== 'string') {
    throw new ApiError(200, 'invalid_response', 'The server did not send an access token');
  }
  setToken(data.access_token);
  return data;
}

export async function me() {
  return (await request('GET', '/api/v1/auth/me')).data;
}

export async function languages() {
  return (await request('GET', '/api/v1/code/languages')).data || [];
}

/** Newest first. Resolves to {items, nextCursor}. */
export async function history({ projectId = null, limit = 50, cursor = null } = {}) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (projectId != null) params.set('project_id', String(projectId));
  if (cursor != null) params.set('cursor', String(cursor));
  const { data, headers } = await request('GET', `/api/v1/code/history?${params}`);
  return { items: Array.isArray(data) ? data : [], nextCursor: headers.get('X-Next-Cursor') };
}

export async function deleteRun(id) {
  await request('DELETE', `/api/v1/code/history/${encodeURIComponent(id)}`);
}

/** The WebSocket URL for the current page, carrying the token (browsers cannot set headers on it). */
export function socketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const token = currentToken() || '';
  return `${scheme}//${location.host}/api/v1/code/ws?token=${encodeURIComponent(token)}`;
}
